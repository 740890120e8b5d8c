// Command nbctl is the netboot appliance's client and admin CLI.
package main

import (
	"context"
	"crypto/x509"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nbctl:", err)
		os.Exit(1)
	}
}

type cli struct {
	c      *amclient.Client
	out    io.Writer
	errOut io.Writer // progress and notes, apart from the output proper
	// server is the appliance's URL; serverSet says whether the user
	// named one (image build registers its image only then).
	server    string
	serverSet bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	server := os.Getenv("NBCTL_SERVER")
	serverSet := server != ""
	if server == "" {
		server = "http://localhost:5054"
	}
	k := &cli{out: stdout, errOut: stderr}
	specs := k.commands()
	var tlsOpt amclient.TLS
	var tokFile string
	top := globalFlags(&server, &tlsOpt, &tokFile)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage(specs))
			return nil
		}
		fmt.Fprint(stderr, usage(specs))
		return err
	}
	serverSet = serverSet || given(top, "server")
	args = top.Args()
	if len(args) == 0 {
		fmt.Fprint(stderr, usage(specs))
		return errors.New("no command")
	}
	token, err := loadToken(tokFile)
	if err != nil {
		return err
	}
	k.server, k.serverSet = server, serverSet
	c, err := amclient.New(server).WithToken(token).WithTLS(tlsOpt)
	if err != nil {
		return err
	}
	k.c = c
	if c.TokenInClear() {
		fmt.Fprintf(stderr, "nbctl: warning: the API token goes to %s in clear; use the appliance's https listener (README: TLS)\n", server)
	}
	return tlsHint(authHint(dispatch(ctx, specs, args, stdout, stderr)))
}

// globalFlags is nbctl's own flag set, the flags before the command; nbctl
// completion lists them from here too.
func globalFlags(server *string, tlsOpt *amclient.TLS, tokFile *string) *flag.FlagSet {
	top := flag.NewFlagSet("nbctl", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.StringVar(server, "server", *server, "appliance URL")
	top.StringVar(&tlsOpt.CAFile, "ca", os.Getenv("NBCTL_CA"), "PEM file of the CA (or the self-signed certificate) an https appliance's certificate must chain to")
	top.StringVar(&tlsOpt.Fingerprint, "fingerprint", os.Getenv("NBCTL_FINGERPRINT"), "SHA-256 fingerprint of an https appliance's certificate: the only check made")
	top.StringVar(tokFile, "token-file", "", "file holding the API token (default: $NBCTL_TOKEN, else the config dir's netboot/token)")
	return top
}

// tlsHint adds to a certificate nbctl could not check how to make it
// checkable: the commonest first failure against an appliance with a
// self-signed certificate.
func tlsHint(err error) error {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w\n(the appliance's certificate is not signed by a CA this machine trusts: give --ca FILE, "+
			"or --fingerprint SHA256 with the fingerprint netbootd logs at start; nbctl tls fingerprint shows the server's)", err)
	case errors.As(err, &host):
		return fmt.Errorf("%w\n(use a --server name or address the certificate names, or --fingerprint)", err)
	}
	return err
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
		return errUsage
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
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	nodes := func(ctx context.Context) ([]apiv1.Node, error) { return k.c.Nodes(ctx, *domain) }
	return listTable(ctx, k, nodes, *asJSON, "HRN\tDOMAIN\tHOSTNAME\tCONTROL_IP\tCONTROL_MAC\tX,Y\tDISK\tPXE_IMAGE", func(n apiv1.Node) []string {
		return []string{n.HRN, n.Domain, n.Hostname, addrText(n.ControlIP), n.ControlMAC.String(), fmt.Sprintf("%d,%d", n.X, n.Y), n.Disk, n.PXEImage}
	})
}

// nodeFlags is a command's flag set with --domain, the testbed its node
// names are looked up in; the client it returns looks them up there.
func (k *cli) nodeFlags(name string) (*flag.FlagSet, func() *amclient.Client) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	domain := fs.String("domain", "", "the testbed to look host names up in")
	return fs, func() *amclient.Client { return k.c.InDomain(*domain) }
}

func (k *cli) nodeShow(ctx context.Context, args []string) error {
	fs, client := k.nodeFlags("nodes show")
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	n, err := client().Node(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	return k.printJSON(n)
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
	fs, client := k.nodeFlags("boot set")
	image := fs.String("image", "", "PXE image (default: the inventory's)")
	lifetime := fs.Duration("lifetime", 0, "link lifetime (default: the appliance's)")
	if err := parseFlags(fs, args, 1, -1); err != nil {
		return err
	}
	c := client()
	var failed int
	for _, node := range fs.Args() {
		l, err := c.SetBoot(ctx, node, *image, *lifetime)
		if err != nil {
			if refused(err) {
				return err // the same for every node: no token, or too low a role
			}
			fmt.Fprintf(k.out, "%s: %v\n", node, err)
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
	fs, client := k.nodeFlags("boot clear")
	if err := parseFlags(fs, args, 1, -1); err != nil {
		return err
	}
	c := client()
	args = fs.Args()
	var failed int
	for _, node := range args {
		if err := c.ClearBoot(ctx, node); err != nil {
			if refused(err) {
				return err // the same for every node: no token, or too low a role
			}
			fmt.Fprintf(k.out, "%s: %v\n", node, err)
			failed++
			continue
		}
		fmt.Fprintf(k.out, "%s: cleared\n", node)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d node(s) failed", failed, len(args))
	}
	return nil
}

func (k *cli) bootList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("boot list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0, 0); err != nil {
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
