package orbitinit

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/initramfs/layout"
)

// Step is one step of the init's table: small, named, and run in order.
// A step that fails is logged and the next one runs: an init that stops
// helps nobody, and the RC is started in the end whatever happened.
type Step struct {
	Name string
	Run  func(ctx context.Context) error
}

// Lease is what DHCP gave the control interface.
type Lease struct {
	IP         net.IPNet
	Gateway    net.IP // option 3, first router
	Server     net.IP // option 54
	NextServer net.IP // siaddr
	Hostname   string // option 12
	Domain     string // option 15
	DNS        []net.IP
}

// Node is the state the steps share: what the init has learnt so far.
type Node struct {
	Log     *slog.Logger
	Console func(line string) // prints a line on the console as it is
	// Start starts a service and restarts it when it exits, without
	// blocking (cmd/orbit-init's supervisor); nil in tests.
	Start func(Service)

	// Filled by the steps.
	Cmdline  Cmdline
	Image    string // from /.orbit_image
	Control  Choice // zero until chosen
	Lease    *Lease // nil until DHCP succeeded
	Hostname string

	// DHCP tuning; zero values take the defaults of DHCPDefaults.
	DHCP DHCPConfig
}

// DHCPConfig tunes the DHCP step.
type DHCPConfig struct {
	Timeout    time.Duration // one DISCOVER/REQUEST exchange
	Retries    int           // exchanges per attempt
	MaxBackoff time.Duration // the wait between attempts doubles up to this
	Attempts   int           // 0: try until it works
}

// DHCPDefaults are used for the zero fields of Node.DHCP.
var DHCPDefaults = DHCPConfig{Timeout: 2 * time.Second, Retries: 3, MaxBackoff: 30 * time.Second}

// Run runs the steps in order, logging each with its duration, and returns
// the names of those that failed. A panicking step is a failed step.
func Run(ctx context.Context, log *slog.Logger, steps []Step) (failed []string) {
	for _, s := range steps {
		start := time.Now()
		err := runStep(ctx, s)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			log.Error("step failed", "step", s.Name, "took", took, "err", err)
			failed = append(failed, s.Name)
			continue
		}
		log.Info("step done", "step", s.Name, "took", took)
	}
	return failed
}

func runStep(ctx context.Context, s Step) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.Run(ctx)
}

// RCEnv is the environment of the RC: the ORBIT_* variables of package
// layout (empty when unknown), sorted, plus PATH, HOME and TERM.
func (n *Node) RCEnv() []string {
	vars := map[string]string{
		layout.EnvImage:    n.Image,
		layout.EnvHostname: n.Hostname,
	}
	vars[layout.EnvAM], _ = n.Cmdline.Get("orbit.am")
	vars[layout.EnvBootIf], _ = n.Cmdline.Get("BOOTIF")
	vars[layout.EnvControlIf] = n.Control.NIC.Name
	if n.Control.NIC.MAC != nil {
		vars[layout.EnvControlMAC] = n.Control.NIC.MAC.String()
	} else {
		vars[layout.EnvControlMAC] = ""
	}
	for _, k := range []string{layout.EnvIP, layout.EnvGateway, layout.EnvDHCPServer, layout.EnvNextServer, layout.EnvDomain} {
		vars[k] = ""
	}
	if l := n.Lease; l != nil {
		vars[layout.EnvIP] = l.IP.String()
		vars[layout.EnvGateway] = ipString(l.Gateway)
		vars[layout.EnvDHCPServer] = ipString(l.Server)
		vars[layout.EnvNextServer] = ipString(l.NextServer)
		vars[layout.EnvDomain] = l.Domain
	}
	env := make([]string, 0, len(vars)+3)
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return append(env, "PATH=/bin:/sbin", "HOME=/root", "TERM=linux")
}

func ipString(ip net.IP) string {
	if ip == nil || ip.IsUnspecified() {
		return ""
	}
	return ip.String()
}

// hostnameFor returns the node's host name: the DHCP host name (option 12,
// up to the first dot), else "orbit-" and the MAC without colons.
func hostnameFor(l *Lease, mac net.HardwareAddr) string {
	if l != nil {
		if h, _, _ := strings.Cut(l.Hostname, "."); validHostname(h) {
			return h
		}
	}
	if mac != nil {
		return "orbit-" + strings.ReplaceAll(mac.String(), ":", "")
	}
	return "orbit"
}

func validHostname(h string) bool {
	if h == "" || len(h) > 63 || h[0] == '-' || h[len(h)-1] == '-' {
		return false
	}
	for _, r := range h {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// hostsFile renders /etc/hosts.
func hostsFile(host string, l *Lease) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n")
	if l != nil && host != "" {
		names := host
		if l.Domain != "" {
			names = host + "." + l.Domain + "\t" + host
		}
		fmt.Fprintf(&b, "%s\t%s\n", l.IP.IP, names)
	}
	return b.String()
}

// parseLoadOrder reads layout.ModulesLoadOrder: one absolute path a line;
// '#' comments and empty lines skipped.
func parseLoadOrder(data string) []string {
	var paths []string
	for _, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		paths = append(paths, line)
	}
	return paths
}
