// Package layout names the files of the orbit-pxe RAM image that its builder
// (package initramfs) writes and its init (cmd/orbit-init) reads. It is the
// contract between the two and holds constants only, so that the init does
// not link the builder and the builder does not link the init's network code.
package layout

const (
	// Init is the program the kernel runs from the initramfs (rdinit=
	// defaults to /init). It is cmd/orbit-init.
	Init = "/init"

	// SbinInit is a symlink to Init, for configurations written for the old
	// image (init=/sbin/init); the kernel ignores init= when /init exists.
	SbinInit = "/sbin/init"

	// RC is the Resource Controller that the init starts and restarts.
	RC = "/bin/orbit-rc"

	// ImageName holds the image's name (e.g. "orbit-2.0.0") and a newline,
	// as the old image's /.orbit_image did; the init prints it on the console.
	ImageName = "/.orbit_image"

	// ImageID is written by the init at boot with the same content as
	// ImageName, for OMF's resource controller (which reads /.omf_imageid).
	ImageID = "/.omf_imageid"

	// ModulesDir is where the kernel modules live:
	// ModulesDir/<kernel version>/kernel/..., as in the kernel package.
	ModulesDir = "/lib/modules"

	// ModulesLoadOrder lists the modules the init loads, one absolute path a
	// line, dependencies before the modules that need them. Lines starting
	// with '#' and empty lines are ignored. Absent or empty: nothing to load.
	ModulesLoadOrder = "/lib/modules/load.order"

	// AuthorizedKeys holds the SSH public key given at build time (optional).
	// With it, the image also has SSHD and Shell (the debug shell).
	AuthorizedKeys = "/etc/orbit/authorized_keys"

	// SSHD is u-root's sshd (cmds/core/sshd), present only in images built
	// with the debug shell (an SSH key given, or Options.DebugShell). It
	// authenticates by public key only and runs Sh for sessions.
	SSHD = "/bin/sshd"

	// Shell is u-root's gosh (cmds/core/gosh, built with the goshsmall
	// tag): the shell that SSHD runs.
	Shell = "/bin/gosh"
	// Sh is a symlink to Shell, for programs that run /bin/sh.
	Sh = "/bin/sh"

	// SSHAuthorizedKeys is written by the init at boot: the keys SSHD
	// accepts, those of AuthorizedKeys and of orbit.sshkey= arguments.
	SSHAuthorizedKeys = "/run/orbit/authorized_keys"

	// SSHHostKey is the SSH host key (ed25519, PKCS#8 PEM) that the init
	// generates at boot; it is never written into the image.
	SSHHostKey = "/run/orbit/ssh_host_ed25519_key"

	// SSHPort is the port SSHD listens on, on every address.
	SSHPort = "22"

	// RCEnv is written by the init before it starts the RC: the RC's
	// environment (the ORBIT_* variables), one KEY=value a line.
	RCEnv = "/run/orbit/env"
)

// Variables of the RC's environment, set by the init. An empty value means
// the init did not learn it (e.g. DHCP failed, or no orbit.am= was given).
const (
	EnvImage      = "ORBIT_IMAGE"       // image name, from ImageName
	EnvControlIf  = "ORBIT_CONTROL_IF"  // control interface, e.g. eth1
	EnvControlMAC = "ORBIT_CONTROL_MAC" // its MAC address, 52:54:00:...
	EnvIP         = "ORBIT_IP"          // leased address with prefix, 10.18.1.2/16
	EnvGateway    = "ORBIT_GATEWAY"     // DHCP option 3 (first router)
	EnvDHCPServer = "ORBIT_DHCP_SERVER" // DHCP option 54 (server identifier)
	EnvNextServer = "ORBIT_NEXT_SERVER" // siaddr of the DHCP reply (TFTP server)
	EnvHostname   = "ORBIT_HOSTNAME"    // host name set by the init
	EnvDomain     = "ORBIT_DOMAIN"      // DHCP option 15
	EnvAM         = "ORBIT_AM"          // orbit.am= from the kernel command line
	EnvBootIf     = "ORBIT_BOOTIF"      // BOOTIF= from the kernel command line (pxelinux IPAPPEND 2)
)
