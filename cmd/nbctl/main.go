// Command nbctl is the netboot appliance's client and admin CLI.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
)

const usageFormat = `usage: nbctl [--server URL] COMMAND [ARGS]

  inventory import FILE        import a YAML inventory (all or nothing)
  inventory export             print the inventory as YAML
  inventory status [--json]    where the inventory comes from; the inventory file's last reading
  nodes [--domain D] [--json]  list nodes
  nodes show HRN               show one node
  nodes events HRN             show a node's boot timeline
  nodes discovered             MACs that asked for DHCP but are not in the inventory
  testbeds                     list testbeds
  images                       list PXE images
  boot set [--image I] [--lifetime 300s] NODE...
                               point nodes' PXE links at an image
  boot clear NODE...           remove nodes' PXE links
  boot list [--json]           list active PXE links
%s  image build --name N --kernel-dir DIR --out TFTP_ROOT [--modules m,...] [--server URL]
                               build the orbit-pxe RAM image (kernel, initramfs,
                               pxelinux.cfg/N); --server also registers it

--server defaults to $NBCTL_SERVER, else http://localhost:5054.
`

var usage = fmt.Sprintf(usageFormat, rcUsage+imagingUsage)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbctl:", err)
		os.Exit(1)
	}
}

// usageError says how a command is called, after "usage: nbctl ". The
// line is the command's syntax, so it may end in "..." (repeated operands).
func usageError(line string) error { return errors.New("usage: nbctl " + line) }

type cli struct {
	c      *amclient.Client
	out    io.Writer
	errOut io.Writer // progress and notes, apart from the output proper
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	server := os.Getenv("NBCTL_SERVER")
	serverSet := server != ""
	if server == "" {
		server = "http://localhost:5054"
	}
	top := flag.NewFlagSet("nbctl", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() { fmt.Fprint(stderr, usage) }
	top.StringVar(&server, "server", server, "appliance URL")
	if err := top.Parse(args); err != nil {
		return err
	}
	top.Visit(func(f *flag.Flag) { serverSet = serverSet || f.Name == "server" })
	args = top.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	k := &cli{c: amclient.New(server), out: stdout, errOut: stderr}
	cmd, rest := args[0], args[1:]
	sub := ""
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		sub = rest[0]
	}
	cmds := k.commands(server, serverSet)
	if do, ok := cmds[cmd+" "+sub]; ok && sub != "" {
		return do(ctx, rest[1:])
	}
	if do, ok := cmds[cmd]; ok && !strings.Contains(cmd, " ") && (sub == "" || cmd != "nodes") {
		return do(ctx, rest)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", strings.Join(args, " "))
}

// command runs one nbctl command with the arguments after its name.
type command func(ctx context.Context, args []string) error

// commands are nbctl's commands by name: "command subcommand", or one word
// for a command that has none (it then takes whatever follows) and for
// "nodes", which alone lists the nodes as "nodes list" does.
func (k *cli) commands(server string, serverSet bool) map[string]command {
	noArgs := func(do func(context.Context) error) command {
		return func(ctx context.Context, _ []string) error { return do(ctx) }
	}
	return map[string]command{
		"inventory import": k.inventoryImport,
		"inventory export": noArgs(k.inventoryExport),
		"inventory status": k.inventoryStatus,
		"nodes show":       k.nodeShow,
		"nodes events":     k.nodeEvents,
		"nodes discovered": noArgs(k.nodesDiscovered),
		"nodes list":       k.nodes,
		"nodes":            k.nodes,
		"testbeds":         noArgs(k.testbeds),
		"images":           noArgs(k.images),
		"boot set":         k.bootSet,
		"boot clear":       k.bootClear,
		"boot list":        k.bootList,
		"rc status":        k.rcStatus,
		"rc exec":          k.rcExec,
		"disk load":        k.diskLoad,
		"disk save":        k.diskSave,
		"disk put":         k.diskPut,
		"disk get":         k.diskGet,
		"disk list":        noArgs(k.diskList),
		"load":             k.load,
		"save":             k.save,
		"image build": func(ctx context.Context, args []string) error {
			return k.imageBuild(ctx, args, server, serverSet)
		},
	}
}

// listTable fetches a list and prints it as JSON, or as a table of a row
// each.
func listTable[T any](ctx context.Context, k *cli, list func(context.Context) ([]T, error), asJSON bool, header string, row func(T) []string) error {
	items, err := list(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		return k.printJSON(items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	k.table(header, rows)
	return nil
}

func (k *cli) table(header string, rows [][]string) {
	w := tabwriter.NewWriter(k.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	w.Flush()
}

func (k *cli) printJSON(v any) error {
	enc := json.NewEncoder(k.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (k *cli) inventoryImport(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError("inventory import FILE")
	}
	data, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	if err := k.c.ImportInventory(ctx, data); err != nil {
		return err
	}
	fmt.Fprintf(k.out, "imported %s\n", args[0])
	return nil
}

func (k *cli) inventoryExport(ctx context.Context) error {
	data, err := k.c.ExportInventory(ctx)
	if err != nil {
		return err
	}
	_, err = k.out.Write(data)
	return err
}

func (k *cli) nodes(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nodes", flag.ContinueOnError)
	domain := fs.String("domain", "", "only this testbed")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nodes := func(ctx context.Context) ([]apiv1.Node, error) { return k.c.Nodes(ctx, *domain) }
	return listTable(ctx, k, nodes, *asJSON, "HRN\tDOMAIN\tHOSTNAME\tCONTROL_IP\tCONTROL_MAC\tX,Y\tDISK\tPXE_IMAGE", func(n apiv1.Node) []string {
		return []string{n.HRN, n.Domain, n.Hostname, addrText(n.ControlIP), n.ControlMAC.String(), fmt.Sprintf("%d,%d", n.X, n.Y), n.Disk, n.PXEImage}
	})
}

func (k *cli) nodeShow(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError("nodes show HRN")
	}
	n, err := k.c.Node(ctx, args[0])
	if err != nil {
		return err
	}
	return k.printJSON(n)
}

func (k *cli) nodeEvents(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return usageError("nodes events HRN")
	}
	events := func(ctx context.Context) ([]apiv1.Event, error) { return k.c.Events(ctx, args[0]) }
	return listTable(ctx, k, events, false, "TIME\tSOURCE\tWHAT\tDETAIL", func(e apiv1.Event) []string {
		return []string{e.At.Local().Format("15:04:05.000"), e.Source, e.What, e.Detail}
	})
}

func (k *cli) nodesDiscovered(ctx context.Context) error {
	return listTable(ctx, k, k.c.Discovered, false, "MAC\tFIRST_SEEN\tLAST_SEEN\tREQUESTS\tLAST_IP\tVENDOR_CLASS\tRELAY", func(d apiv1.Discovered) []string {
		return []string{d.MAC.String(), d.FirstSeen.Local().Format(time.DateTime), d.LastSeen.Local().Format(time.DateTime),
			fmt.Sprint(d.Count), addrText(d.LastIP), d.VendorClass, addrText(d.Relay)}
	})
}

func (k *cli) testbeds(ctx context.Context) error {
	return listTable(ctx, k, k.c.Testbeds, false, "DOMAIN\tNODES", func(t apiv1.Testbed) []string {
		return []string{t.Domain, fmt.Sprint(t.Nodes)}
	})
}

func (k *cli) images(ctx context.Context) error {
	return listTable(ctx, k, k.c.Images, false, "NAME\tDESCRIPTION", func(i apiv1.Image) []string {
		return []string{i.Name, i.Description}
	})
}

func (k *cli) bootSet(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boot set", flag.ContinueOnError)
	image := fs.String("image", "", "PXE image (default: the inventory's)")
	lifetime := fs.Duration("lifetime", 0, "link lifetime (default: the appliance's)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("boot set [--image I] [--lifetime D] NODE...")
	}
	var failed int
	for _, hrn := range fs.Args() {
		l, err := k.c.SetBoot(ctx, hrn, *image, *lifetime)
		if err != nil {
			fmt.Fprintf(k.out, "%s: %v\n", hrn, err)
			failed++
			continue
		}
		fmt.Fprintf(k.out, "%s: %s -> %s until %s\n", l.HRN, l.Hex, l.Image, l.ExpiresAt.Local().Format(time.TimeOnly))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) failed", failed, fs.NArg())
	}
	return nil
}

func (k *cli) bootClear(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError("boot clear NODE...")
	}
	var failed int
	for _, hrn := range args {
		if err := k.c.ClearBoot(ctx, hrn); err != nil {
			fmt.Fprintf(k.out, "%s: %v\n", hrn, err)
			failed++
			continue
		}
		fmt.Fprintf(k.out, "%s: cleared\n", hrn)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) failed", failed, len(args))
	}
	return nil
}

func (k *cli) bootList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boot list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return listTable(ctx, k, k.c.Boot, *asJSON, "NODE\tIP\tHEX\tIMAGE\tSET_AT\tEXPIRES_AT\tREFS", func(l apiv1.BootLink) []string {
		return []string{l.HRN, addrText(l.ControlIP), l.Hex, l.Image, l.SetAt.Local().Format(time.TimeOnly), l.ExpiresAt.Local().Format(time.TimeOnly), fmt.Sprint(l.Refs)}
	})
}

// addrText is an address as the API writes it: "" when there is none.
func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
