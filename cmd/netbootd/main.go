// Command netbootd is the testbed netboot appliance: the Aggregate Manager
// (OMF /pxe and /inventory, JSON API, the Resource Controller broker and
// disk images, the boot files over HTTP), the TFTP server and the DHCP
// server, in one process sharing one database.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/errgroup"

	"github.com/orbit-lab/netboot/am"
	"github.com/orbit-lab/netboot/am/guard"
	"github.com/orbit-lab/netboot/am/httpboot"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/am/webui"
	"github.com/orbit-lab/netboot/cmd/netbootd/timeline"
	"github.com/orbit-lab/netboot/dhcpd"
	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/config"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/logging"
	"github.com/orbit-lab/netboot/internal/sourcelimit"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/tlscert"
	"github.com/orbit-lab/netboot/tftpd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "netbootd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	// Caught from the start: SIGHUP's default would end netbootd, and a
	// reload sent while it starts must not.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	fset := flag.NewFlagSet("netbootd", flag.ContinueOnError)
	fset.SetOutput(stderr)
	cfgPath := fset.String("config", "", "YAML configuration file (default: built-in defaults)")
	logFormat := fset.String("log-format", "text", "log format: text or json")
	logLevel := fset.String("log-level", "info", "log level: debug, info, warn, error")
	readyFile := fset.String("ready-file", "", "once serving, write the bound HTTP, HTTPS and TFTP addresses to this file as JSON\n"+
		"(for a supervisor, or a test that listens on port 0); removed at exit")
	if err := fset.Parse(args); err != nil {
		return err
	}
	log, err := logging.New(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if _, err := os.ReadDir(cfg.TFTPRoot); err != nil {
		return fmt.Errorf("tftp_root: %w", err)
	}
	if err := writableDir("state_dir", cfg.StateDir, 0o750); err != nil {
		return err
	}
	// Before the database and the links: a certificate that cannot serve
	// stops netbootd having changed nothing.
	tlsCfg, err := serverTLS(cfg, log)
	if err != nil {
		return err
	}

	st, err := store.Open(ctx, cfg.StateDir)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := seedInventory(ctx, st, cfg.Inventory.Seed, log); err != nil {
		return err
	}
	if err := ensureAdminToken(ctx, st, cfg.StateDir, log); err != nil {
		return err
	}

	cfgDir := cfg.PXE.CfgDir
	if !filepath.IsAbs(cfgDir) {
		cfgDir = filepath.Join(cfg.TFTPRoot, cfgDir)
	}
	if err := writableDir("pxe.cfg_dir", cfgDir, 0o755); err != nil {
		return err
	}
	// GRUB's per-node links and our grub.cfg: GRUB's prefix is fixed at
	// <tftp_root>/grub.
	grubDir := filepath.Join(cfg.TFTPRoot, imagename.GrubDir)
	if err := writableDir("tftp_root/grub", grubDir, 0o755); err != nil {
		return err
	}
	links, err := pxelink.New(pxelink.Config{Dir: cfgDir, GrubDir: grubDir, Lifetime: cfg.PXE.LinkLifetime}, st, log.With("svc", "pxe"))
	if err != nil {
		return err
	}
	if err := links.EnsureDefault(); err != nil {
		return err
	}
	if err := links.EnsureGrubRoot(); err != nil {
		return err
	}
	// Before TFTP and the AM serve: a node that boots, or an EC that asks,
	// right after a restart must see the links the database holds.
	if err := links.Reconcile(ctx); err != nil {
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	met := newMetrics(st)
	rcb, err := rcbroker.New(rcbroker.Config{ImageDir: filepath.Join(cfg.StateDir, "images"), Multicast: multicast(cfg), Metrics: met}, st, log.With("svc", "rc"))
	if err != nil {
		return err
	}
	collectRC(met, rcb)
	events := timeline.New(st, met, log.With("svc", "timeline"))
	bootFiles, err := httpboot.New(httpboot.Config{Root: cfg.TFTPRoot, Prefix: cfg.HTTPBoot.Prefix}, log.With("svc", "httpboot"), events)
	if err != nil {
		return err
	}
	// The web view follows the timelines as the store commits them.
	ui := webui.New(webui.Config{}, st, log.With("svc", "webui"))
	st.ObserveEvents(ui.Publish)
	gd := guard.New(guard.Config{OMFAllow: cfg.OMF.Allow, OMFAllowRead: cfg.OMF.AllowRead}, st)
	amCfg := am.Config{Listen: cfg.HTTP.Listen, TLSListen: cfg.HTTP.TLSListen, TLS: tlsCfg, DefaultImage: cfg.PXE.DefaultImage, Guard: gd, RC: rcb, BootFiles: bootFiles, UI: ui,
		IPXE: am.IPXEConfig{Root: cfg.TFTPRoot, Prefix: cfg.HTTPBoot.Prefix}, InventoryFile: cfg.Inventory.File,
		Audit: st, AuditRetention: cfg.Audit.Retention, Limits: am.Limits{
			Enroll: sourcelimit.Limit(cfg.Limits.Enroll), AuthFail: sourcelimit.Limit(cfg.Limits.AuthFail), OMF: sourcelimit.Limit(cfg.Limits.OMF),
		}, Metrics: met}
	amSrv := am.New(amCfg, st, links, log.With("svc", "am")) //nolint:contextcheck // am.New starts nothing; each handler takes its request's context
	// Before anything serves: nodes boot and ECs ask by the file's
	// inventory. A bad file stops netbootd here, saying which lines.
	if cfg.Inventory.File != "" {
		if err := amSrv.LoadInventoryFile(ctx); err != nil {
			return err
		}
	}
	tftpSrv, err := tftpd.New(tftpd.Config{Listen: cfg.TFTP.Listen, Root: cfg.TFTPRoot, Timeout: cfg.TFTP.Timeout, Retries: cfg.TFTP.Retries}, log.With("svc", "tftp"), events)
	if err != nil {
		return err
	}
	var dhcpSrv *dhcpd.Server
	if cfg.DHCP.Enabled {
		// The lookup on every request's path: one prepared query and a
		// cache, on a database connection of its own.
		nodes, err := st.NewNodeFinder(ctx)
		if err != nil {
			return fmt.Errorf("dhcpd: %w", err)
		}
		defer nodes.Close()
		b := dhcpd.Backend{Nodes: nodes, Leases: st, Discovered: st, Events: st, Links: st}
		dc := dhcpConfig(cfg.DHCP)
		dc.IPXEScript, dc.HTTPBoot = bootURLs(cfg)
		dc.BootRoot = cfg.TFTPRoot
		dc.Metrics = met
		if dc.BootfileAA64 != "" {
			if _, err := os.Stat(filepath.Join(cfg.TFTPRoot, dc.BootfileAA64)); err != nil {
				log.Info("no arm64 boot loader in tftp_root: arm64 UEFI clients get no boot file", "bootfile_aa64", dc.BootfileAA64)
				dc.BootfileAA64 = ""
			}
		}
		if dhcpSrv, err = dhcpd.New(dc, b, log.With("svc", "dhcp")); err != nil {
			return err
		}
	}

	log.Info("netbootd starting", "state_dir", cfg.StateDir, "tftp_root", cfg.TFTPRoot, "cfg_dir", cfgDir, "http_boot", cfg.HTTPBoot.Prefix)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return links.Run(gctx) })
	g.Go(func() error { return amSrv.Serve(gctx) })
	g.Go(func() error { return amSrv.KeepAudit(gctx) })
	g.Go(func() error { return rcb.Run(gctx) })
	g.Go(func() error { return tftpSrv.Serve(gctx) })
	if dhcpSrv != nil {
		g.Go(func() error { return dhcpSrv.Serve(gctx) })
	}
	g.Go(func() error { return reloadOnHUP(gctx, hup, amSrv, cfg.Inventory, log) })
	if *readyFile != "" {
		defer os.Remove(*readyFile)
		g.Go(func() error { return writeReady(gctx, *readyFile, amSrv, tftpSrv, cfg) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	log.Info("netbootd stopped")
	return nil
}

// dhcpConfig is the DHCP server's part of the configuration, parsed and
// checked by config.Load.
func dhcpConfig(c config.DHCP) dhcpd.Config {
	out := dhcpd.Config{
		Interface:       c.Interface,
		ServerIP:        c.ServerIP,
		Subnet:          dhcpd.Subnet{Prefix: c.Subnet, Router: c.Router, Pool: c.Pool},
		DNS:             c.DNS,
		Domain:          c.Domain,
		LeaseTime:       c.LeaseTime,
		Bootfile:        c.Bootfile,
		BootfileEFI:     c.BootfileEFI,
		IPXEFast:        c.IPXEFast,
		UEFILoader:      c.UEFILoader,
		BootfileAA64:    c.BootfileAA64,
		BootfileIPXEEFI: c.BootfileIPXEEFI,
		Mode:            dhcpd.Mode(c.Mode),
		Workers:         c.Workers,
	}
	for _, sn := range c.Subnets {
		out.Subnets = append(out.Subnets, dhcpd.Subnet{Prefix: sn.Subnet, Router: sn.Router, Pool: sn.Pool})
	}
	return out
}

// bootURLs are the URLs DHCP hands out for the HTTP boot paths: the
// per-node iPXE scripts and tftp_root over HTTP, on the AM's plain port at
// the DHCP server address; none when http_boot is off or there is no plain
// listener (firmware does not know our certificate), and no script URL
// with dhcp.ipxe_script off.
func bootURLs(cfg config.Config) (ipxeScript, httpBoot string) {
	if cfg.HTTPBoot.Prefix == "" || cfg.HTTP.Listen == "" {
		return "", ""
	}
	_, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil || port == "" {
		port = "80"
	}
	base := "http://" + net.JoinHostPort(cfg.DHCP.ServerIP.String(), port)
	if cfg.DHCP.IPXEScript {
		ipxeScript = base + am.IPXEPath
	}
	return ipxeScript, base + cfg.HTTPBoot.Prefix
}

// readyAddrs is what --ready-file holds.
type readyAddrs struct {
	HTTP  string `json:"http,omitempty"`
	HTTPS string `json:"https,omitempty"`
	TFTP  string `json:"tftp,omitempty"`
}

// writeReady writes the bound addresses to path once the AM and TFTP
// servers have bound their sockets; nothing if one of them failed to (its
// Serve says why).
func writeReady(ctx context.Context, path string, amSrv *am.Server, tftpSrv *tftpd.Server, cfg config.Config) error {
	for _, ready := range []<-chan struct{}{amSrv.Ready(), tftpSrv.Ready()} {
		select {
		case <-ready:
		case <-ctx.Done():
			return nil
		}
	}
	var r readyAddrs
	bound := []struct {
		set  bool
		addr net.Addr
		out  *string
	}{
		{cfg.HTTP.Listen != "", amSrv.Addr(), &r.HTTP},
		{cfg.HTTP.TLSListen != "", amSrv.TLSAddr(), &r.HTTPS},
		{cfg.TFTP.Listen != "", tftpSrv.Addr(), &r.TFTP},
	}
	for _, b := range bound {
		if !b.set {
			continue
		}
		if b.addr == nil {
			return nil
		}
		*b.out = b.addr.String()
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	// Atomic: a reader sees the whole file or none.
	if err := atomicfile.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("--ready-file: %w", err)
	}
	return nil
}

// reloadOnHUP reads the inventory file again at each SIGHUP (systemctl
// reload). A bad file is logged and shown by GET /api/v1/inventory/status;
// netbootd goes on with the inventory it has. The config itself is read at
// start only.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, amSrv *am.Server, inv config.Inventory, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		}
		if inv.File == "" {
			log.Warn("SIGHUP: nothing to read again: inventory.file is not set (the inventory is kept through the API: nbctl inventory import)")
			continue
		}
		log.Info("SIGHUP: reading the inventory file again", "file", inv.File)
		_ = amSrv.LoadInventoryFile(ctx) // it logs and records its failure
	}
}

// seedInventory imports the seed file into an empty database. A missing
// seed is normal (an operator may import later); a broken one is fatal.
func seedInventory(ctx context.Context, st *store.Store, path string, log *slog.Logger) error {
	if path == "" {
		return nil
	}
	n, err := st.NodeCount(ctx)
	if err != nil || n > 0 {
		return err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("inventory is empty and there is no seed file", "seed", path)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inventory seed: %w", err)
	}
	f, err := inventory.ParseFile(data)
	if err == nil {
		err = st.Import(ctx, f)
	}
	if err != nil {
		return fmt.Errorf("inventory seed %s: %w", path, err)
	}
	log.Info("inventory seeded", "seed", path)
	return nil
}

// serverTLS is the TLS listener's config, nil without one: the
// certificate given as files, or the one http.tls: auto keeps in
// state_dir/tls (made on the first start). Its fingerprint is logged,
// for operators to pin (nbctl --fingerprint) and to compare with what
// nbctl tls fingerprint shows.
func serverTLS(cfg config.Config, log *slog.Logger) (*tls.Config, error) {
	t := cfg.HTTP.TLS
	if !t.Enabled() {
		return nil, nil
	}
	var cert tls.Certificate
	var err error
	source := "files"
	if t.Auto {
		source = "auto"
		hostname, _ := os.Hostname()
		var extra []netip.Addr
		if cfg.DHCP.Enabled {
			extra = append(extra, cfg.DHCP.ServerIP)
		}
		hosts := tlscert.Hosts(hostname, []string{cfg.HTTP.Listen, cfg.HTTP.TLSListen}, extra)
		var made bool
		dir := filepath.Join(cfg.StateDir, "tls")
		if cert, made, err = tlscert.Auto(dir, hosts, time.Now()); err != nil {
			return nil, err
		}
		if made {
			log.Info("TLS: made a self-signed certificate", "dir", dir, "hosts", strings.Join(hosts, ","))
		} else if missing := tlscert.Missing(cert.Leaf, hosts); len(missing) > 0 {
			// Kept as it is: operators pinned it. A client that checks
			// names (--ca, curl) must use one the certificate has.
			log.Warn("TLS: the kept certificate does not name some of this machine's names and addresses "+
				"(nbctl --fingerprint works; for --ca, remove the two files in dir to make a new one)",
				"dir", dir, "missing", strings.Join(missing, ","))
		}
	} else if cert, err = tlscert.LoadFiles(t.Cert, t.Key); err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		return nil, errors.New("http.tls: no certificate")
	}
	log.Info("TLS certificate", "sha256", tlscert.Fingerprint(cert.Leaf.Raw), "source", source,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	if time.Now().After(cert.Leaf.NotAfter) {
		log.Warn("TLS: the certificate has expired: clients will refuse it", "not_after", cert.Leaf.NotAfter)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// multicast is the broker's view of the imaging section: sessions send
// from imaging.source, else from the DHCP server's address.
func multicast(cfg config.Config) rcbroker.Multicast {
	im := cfg.Imaging
	src := im.Source
	if !src.IsValid() {
		src = cfg.DHCP.ServerIP
	}
	return rcbroker.Multicast{Groups: im.Multicast, PortFirst: im.PortFirst, PortLast: im.PortLast, TTL: im.TTL,
		Rate: im.Rate, Source: src, Fallback: im.Fallback}
}
