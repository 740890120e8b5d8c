package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// command runs one nbctl command with the arguments after its name.
type command func(ctx context.Context, args []string) error

// spec is one nbctl command: what selects it, how it is called and what it
// does. The usage text, each command's --help and its usage errors are
// all made from the table, so that they cannot disagree.
type spec struct {
	name string // "nodes show"; one word for a command without subcommands
	args string // its synopsis after the name; a new line continues it
	what string // what it does, a line each; "" for an alias, left out of the usage list
	run  command
}

func (s spec) synopsis() string {
	return strings.TrimSpace(s.name + " " + strings.ReplaceAll(s.args, "\n", " "))
}

// commands is nbctl's command table, in the order the usage lists it.
func (k *cli) commands() []spec {
	noArgs := func(do func(context.Context) error) command {
		return func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return errUsage
			}
			return do(ctx)
		}
	}
	return []spec{
		{"inventory import", "FILE", "import a YAML inventory (all or nothing)", k.inventoryImport},
		{"inventory export", "", "print the inventory as YAML", noArgs(k.inventoryExport)},
		{"inventory status", "[--json]", "where the inventory comes from; the inventory file's last reading", k.inventoryStatus},
		{"nodes", "[--domain D] [--json]", "list nodes", k.nodes},
		{"nodes list", "[--domain D] [--json]", "", k.nodes},
		{"nodes show", "[--domain D] NODE", "show one node", k.nodeShow},
		{"nodes events", "[--domain D] [--follow] NODE", "show a node's boot timeline; --follow prints new\nevents as they come, until Ctrl-C", k.nodeEvents},
		{"nodes discovered", "", "MACs that asked for DHCP but are not in the inventory", noArgs(k.nodesDiscovered)},
		{"testbeds", "", "list testbeds", noArgs(k.testbeds)},
		{"images", "", "list PXE images", noArgs(k.images)},
		{"boot set", "[--domain D] [--image I] [--lifetime 300s] NODE...", "point nodes' PXE links at an image", k.bootSet},
		{"boot clear", "[--domain D] NODE...", "remove nodes' PXE links", k.bootClear},
		{"boot list", "[--json]", "list active PXE links", k.bootList},
		{"rc status", "[--json] [--domain D] [NODE]", "enrolled Resource Controllers, or one node's with its commands", k.rcStatus},
		{"rc exec", "[--domain D] [--timeout DUR] [--shell] NODE -- PROGRAM [ARG...]",
			"run a program on a node, print its output: PROGRAM is a path\nor found on the RC's PATH, no shell; --shell runs the words as\none line by /bin/sh -c (images built with --ssh-key have one)", k.rcExec},
		{"disk load", "[--domain D] [--disk DEV] NODE IMAGE", "write a stored disk image onto the node's disk", k.diskLoad},
		{"disk save", "[--domain D] [--disk DEV] NODE IMAGE", "store the node's disk as a disk image (chunked)", k.diskSave},
		{"disk list", "", "list stored disk images: disk size, stored size, chunks, zero share", noArgs(k.diskList)},
		{"disk put", "[--chunk-size 1048576] [--as-is] NAME FILE",
			"store FILE (a raw disk, gzip or zstd of one, qcow2 with qemu-img,\nor a chunked image) as chunked disk image NAME, converted as\nit is sent; --as-is stores gzip or zstd unchanged, as one stream", k.diskPut},
		{"disk get", "NAME FILE", "fetch disk image NAME, as stored, into FILE", k.diskGet},
		{"load", "--nodes A,B --image NAME [--domain D] [--timeout 20m] [--boot-timeout 5m]\n[--attempts 3] [--pxe-image I] [--disk DEV] [--no-reboot]",
			"netboot the nodes into the RAM image, write disk image\nNAME onto their disks, reboot them into it (omf load)", k.load},
		{"save", "--node A --image NAME [--replace] [same flags as load]",
			"netboot the node, store its disk as disk image NAME,\nreboot it (omf save)", k.save},
		{"token create", "--name N --role viewer|operator|admin [--expires 90d]", "make an API token; it is printed this once", k.tokenCreate},
		{"token list", "[--json]", "list API tokens (never their secrets)", k.tokenList},
		{"token revoke", "NAME", "revoke an API token", k.tokenRevoke},
		{"tls fingerprint", "", "print the SHA-256 fingerprint of the certificate the https\n--server presents, unverified: compare it with netbootd's\nlog before pinning it with --fingerprint", noArgs(k.tlsFingerprint)},
		{"audit", "[--since 24h|TIME] [--node HRN] [--limit N] [--json]", "who changed what, refusals included", k.audit},
		{"image build", "--name N --kernel-dir DIR --out TFTP_ROOT [--modules m,...] [--ssh-key F]\n[--append ARGS] [--module-root DIR]\n[--efi-img [--shim F] [--grub-efi F]] [--register] [--description D] [--server URL]",
			"build the orbit-pxe RAM image (kernel, initramfs,\npxelinux.cfg/N); --server also registers it",
			func(ctx context.Context, args []string) error { return k.imageBuild(ctx, args, k.server, k.serverSet) }},
		{"completion", "bash", "print the bash completion script (the Debian package installs it\nas /usr/share/bash-completion/completions/nbctl)", k.completion},
	}
}

// usageNotes end the usage text and every command's help.
const usageNotes = `NODE, A and B name a node as OMF's calls do: its HRN, or a host name that
is unique in the inventory, or in testbed D with --domain D.
COMMAND --help (or -h) prints the command's usage; after rc exec's --,
--help goes to the program.
--server defaults to $NBCTL_SERVER, else http://localhost:5054. An https
server's certificate is checked against the system's CAs, or --ca FILE, or
only by its pinned SHA-256 --fingerprint ($NBCTL_CA, $NBCTL_FINGERPRINT).
The API token is read from --token-file, else $NBCTL_TOKEN, else
$XDG_CONFIG_HOME/netboot/token (~/.config/netboot/token); reads need the
viewer role, boot, power, commands and disk images operator, inventory
changes and tokens admin.
`

// usage is the whole usage text.
func usage(specs []spec) string {
	var b strings.Builder
	b.WriteString("usage: nbctl [--server URL] [--ca FILE | --fingerprint SHA256] [--token-file FILE] COMMAND [ARGS]\n\n")
	writeEntries(&b, specs)
	b.WriteString("\n" + usageNotes)
	return b.String()
}

// writeEntries lists commands, each with what it does in a column.
func writeEntries(b *strings.Builder, specs []spec) {
	const col = 31
	for _, s := range specs {
		if s.what == "" {
			continue
		}
		lines := strings.Split(strings.TrimSpace(s.name+" "+s.args), "\n")
		for i := 1; i < len(lines); i++ {
			lines[i] = "     " + lines[i]
		}
		last := "  " + lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			b.WriteString("  " + l + "\n")
		}
		what := strings.Split(s.what, "\n")
		if len(last) <= col-2 {
			fmt.Fprintf(b, "%-*s%s\n", col, last, what[0])
			what = what[1:]
		} else {
			b.WriteString(last + "\n")
		}
		for _, w := range what {
			b.WriteString(strings.Repeat(" ", col) + w + "\n")
		}
	}
}

// errUsage is a call that does not match its command's synopsis; run says
// the synopsis. A flag error wraps it, with what was wrong.
var errUsage = errors.New("usage")

// parseFlags parses a command's flags and checks that from least to most
// operands follow them (most < 0: no limit); a bad flag or count is a
// usage error.
func parseFlags(fs *flag.FlagSet, args []string, least, most int) error {
	if len(args) == 1 && args[0] == flagProbe {
		return probed{fs}
	}
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", err, errUsage)
	}
	switch {
	case most >= 0 && fs.NArg() > most:
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(most), errUsage)
	case fs.NArg() < least:
		return errUsage
	}
	return nil
}

// flagProbe, as a command's only argument, makes parseFlags hand back the
// command's flag set (as a probed error) without parsing: nbctl completion
// so lists each command's flags from the command table itself. It holds a
// NUL, which no argument on a command line can (argv strings end at one).
const flagProbe = "\x00flags"

// probed carries a command's flag set back from parseFlags to a probe.
type probed struct{ fs *flag.FlagSet }

func (probed) Error() string { return "flag probe" }

// given reports whether the command line set the flag name, even to its
// default.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// isHelp reports whether an argument asks for help, as the flag package
// takes it.
func isHelp(a string) bool {
	return a == "-h" || a == "--h" || a == "-help" || a == "--help"
}

// wantsHelp reports whether args ask for help before a "--": what follows
// one is an operand, such as rc exec's program arguments.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if isHelp(a) {
			return true
		}
	}
	return false
}

// find picks the command that args name: two words, else one. group is
// what help shows: the command found by two words; else every command
// under the first word (nbctl boot --help, nbctl nodes --help; the one
// word is a command of its own or not).
func find(specs []spec, args []string) (s spec, rest []string, group []spec, ok bool) {
	if len(args) == 0 {
		return spec{}, nil, nil, false
	}
	for _, sp := range specs {
		if strings.HasPrefix(sp.name+" ", args[0]+" ") {
			group = append(group, sp)
		}
	}
	if len(args) > 1 {
		if i := slices.IndexFunc(specs, func(sp spec) bool { return sp.name == args[0]+" "+args[1] }); i >= 0 {
			return specs[i], args[2:], []spec{specs[i]}, true
		}
	}
	i := slices.IndexFunc(specs, func(sp spec) bool { return sp.name == args[0] })
	if i < 0 {
		return spec{}, nil, group, false
	}
	// A word that heads other commands takes flags only (nodes list, not
	// nodes frobnicate).
	if len(group) > 1 && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
		return spec{}, nil, group, false
	}
	return specs[i], args[1:], group, true
}

// help prints the usage of the commands in group: one in full, several
// as in the usage text.
func help(w io.Writer, group []spec) {
	var b strings.Builder
	if len(group) == 1 {
		fmt.Fprintf(&b, "usage: nbctl %s\n", group[0].synopsis())
		if group[0].what != "" {
			b.WriteString("\n  " + strings.ReplaceAll(group[0].what, "\n", "\n  ") + "\n")
		}
	} else {
		b.WriteString("usage:\n")
		writeEntries(&b, group)
	}
	b.WriteString("\n" + usageNotes)
	fmt.Fprint(w, b.String())
}

// dispatch runs the command args name. Help (nbctl help [COMMAND], or
// --help or -h anywhere before a --) is printed without a call to the
// appliance, and is a success.
func dispatch(ctx context.Context, specs []spec, args []string, stdout, stderr io.Writer) error {
	if args[0] == "help" {
		if len(args) == 1 {
			fmt.Fprint(stdout, usage(specs))
			return nil
		}
		if _, _, group, _ := find(specs, args[1:]); len(group) > 0 {
			help(stdout, group)
			return nil
		}
		fmt.Fprint(stderr, usage(specs))
		return fmt.Errorf("unknown command %q", strings.Join(args[1:], " "))
	}
	s, rest, group, ok := find(specs, args)
	if wantsHelp(args) && len(group) > 0 {
		help(stdout, group)
		return nil
	}
	if !ok {
		fmt.Fprint(stderr, usage(specs))
		return fmt.Errorf("unknown command %q", strings.Join(args, " "))
	}
	err := s.run(ctx, rest)
	if errors.Is(err, errUsage) {
		line := "usage: nbctl " + s.synopsis() + " (nbctl " + s.name + " --help)"
		if why := strings.TrimSuffix(err.Error(), ": "+errUsage.Error()); why != errUsage.Error() {
			return fmt.Errorf("%s\n%s", why, line)
		}
		return errors.New(line)
	}
	return err
}
