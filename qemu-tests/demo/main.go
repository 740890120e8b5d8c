// Command demo is `make demo`: the virtual testbed the QEMU tests use
// (package vtestbed), driven the way an Experiment Controller and an
// operator would. netbootd runs in a network namespace of its own with DHCP
// on a bridge; three QEMU nodes (two BIOS ones, virtio-net and e1000,
// through pxelinux, and a UEFI one with Secure Boot enforced, through
// Debian's signed shim and GRUB) are pointed at the orbit-pxe image with
// the OMF call, powered on through the AM's power service (OMF /cmc/on,
// netbootd's qemu driver), netboot, and their Resource Controllers enroll;
// the demo prints, per node, how it booted and what nbctl shows of it,
// then `nbctl load` writes a disk image onto one node, which reboots into
// it, and the demo stays up until Ctrl-C (DEMO_ONCE=1: it exits at the end).
//
// It needs root, /dev/net/tun and the packages make test installs.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/nsproxy"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

const image = "orbit-2.0.0"

func main() {
	err := vtestbed.RunProgram("demo", os.Stderr, demo)
	if errors.Is(err, vtestbed.ErrSkipped) {
		fmt.Fprintln(os.Stderr, "demo: cannot run here (see above)")
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n\033[1m== %s\033[0m\n", fmt.Sprintf(format, args...))
}

func demo(t testing.TB) {
	vtestbed.Require(t, vtestbed.Netbootd)
	start := time.Now()
	nodes := []vtestbed.Node{vtestbed.NewNode(1, vtestbed.VirtioNet), vtestbed.NewNode(2, vtestbed.E1000), vtestbed.NewNode(3, vtestbed.VirtioNet)}
	uefi := nodes[2] // OVMF, Secure Boot enforced
	firmware := func(n vtestbed.Node) string {
		if n.HRN == uefi.HRN {
			return "UEFI, Secure Boot"
		}
		return "BIOS"
	}
	step("Building the virtual testbed: a namespace, a bridge, netbootd (DHCP, TFTP, AM), the orbit-pxe image, shim and GRUB")
	vtestbed.RequireUEFI(t)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: nodes, Image: image})
	if err := tb.InstallUEFILoaders(); err != nil {
		t.Fatal(err)
	}
	step("The appliance's HTTP API and web view, forwarded to this host's loopback")
	web := forward(t, tb)
	if err := checkForwarded(web, tb.App.Token, nodes); err != nil {
		t.Fatal(err)
	}
	showWeb(web, tb.App.TokenFile)
	nbctl := func(args ...string) {
		out, err := tb.App.Nbctl(args...)
		fmt.Printf("$ nbctl %v\n%s", args, out)
		if err != nil {
			t.Fatalf("nbctl %v: %v", args, err)
		}
	}
	nbctl("nodes")

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	step("The EC points the nodes at %s with OMF setBootImageNS", image)
	reply, err := tb.SetBootImageNS(ctx, image, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(reply)
	nbctl("boot", "list")

	step("Power on through the AM's power service (OMF /cmc/on): the nodes netboot (TCG: BIOS ~20 s, UEFI ~60 s)")
	vms := map[string]*vtestbed.VM{}
	for _, n := range nodes {
		// Paused until the AM's cmc (its qemu driver) powers it on; "nc":
		// with no boot link, pxelinux's LOCALBOOT boots the disk. The UEFI
		// node's firmware has the NIC first, then the disk.
		o := vtestbed.BootOptions{Order: "nc", AMPower: true, DiskSize: 4 << 20}
		if n.HRN == uefi.HRN {
			o = vtestbed.BootOptions{UEFI: &vtestbed.UEFI{SecureBoot: true}, AMPower: true}
		}
		vms[n.HRN] = tb.Boot(t, n, o)
	}
	onAt := map[string]time.Time{}
	for _, n := range nodes {
		onAt[n.HRN] = time.Now()
		if err := tb.CMC(ctx, "on", n); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("GET /cmc/on?hrn=%s&domain=%s: OK\n", n.HRN, vtestbed.Domain)
	}
	for _, n := range nodes {
		st, _, err := tb.WaitEnrolled(ctx, n.HRN)
		if err != nil {
			t.Fatalf("%s: %v", n.HRN, err)
		}
		sb, at := "unknown", time.Now()
		if st.SecureBoot != nil {
			sb = fmt.Sprint(*st.SecureBoot)
		}
		if st.EnrolledAt != nil {
			at = *st.EnrolledAt
		}
		fmt.Printf("%s (%s, %s): RC enrolled %.1f s after the demo started, %.1f s after power-on; it reports firmware %s, Secure Boot %s\n",
			n.HRN, firmware(n), n.NIC, at.Sub(start).Seconds(), at.Sub(onAt[n.HRN]).Seconds(), st.Firmware, sb)
	}
	step("How each node booted (its timeline: DHCP, the loader and files it fetched, the enrollment)")
	for _, n := range nodes {
		evs, err := tb.Events(ctx, n.HRN)
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		for _, e := range evs {
			if e.Source == "tftp" && !strings.HasPrefix(e.Detail, "failed") {
				files = append(files, e.What)
			}
		}
		fmt.Printf("%s (%s): %s\n", n.Hostname, firmware(n), strings.Join(files, " -> "))
	}
	step("What the operator sees")
	nbctl("rc", "status")
	for _, n := range nodes {
		nbctl("nodes", "events", n.HRN)
	}

	loaded := nodes[0]
	step("nbctl load: a disk image onto %s (reset, netboot, LOAD_IMAGE, reboot into the disk)", loaded.Hostname)
	const marker = "DEMO-DISK: this disk was written by nbctl load"
	file, err := demoDiskImage(tb.Dir, marker, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	nbctl("disk", "put", "demo-disk", file)
	out, err := tb.App.NbctlContext(ctx, "load", "--nodes", loaded.HRN, "--image", "demo-disk", "--boot-timeout", "3m")
	fmt.Printf("$ nbctl load --nodes %s --image demo-disk\n%s", loaded.HRN, out)
	if err != nil {
		t.Fatalf("nbctl load: %v", err)
	}
	line, err := vms[loaded.HRN].Console.WaitLine(ctx, marker)
	if err != nil {
		t.Fatalf("%s did not boot the loaded disk: %v", loaded.Hostname, err)
	}
	fmt.Printf("%s serial console, after the reboot: %q\n", loaded.Hostname, line.Text)
	nbctl("nodes", "events", loaded.HRN)

	if os.Getenv("DEMO_ONCE") == "1" {
		step("Done (DEMO_ONCE=1): tearing the testbed down")
		return
	}
	step("The testbed stays up; serial logs under %s. Ctrl-C tears it down.", tb.Dir)
	showWeb(web, tb.App.TokenFile)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}

// demoDiskImage writes a gzip disk image of size bytes whose boot sector
// prints marker, and returns its path.
func demoDiskImage(dir, marker string, size int) (string, error) {
	sector, err := vtestbed.BootSector(marker)
	if err != nil {
		return "", err
	}
	raw := make([]byte, size)
	copy(raw, sector)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(raw); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "demo-disk.gz")
	return path, os.WriteFile(path, gz.Bytes(), 0o644)
}

// webPort is where the host's browser finds the demo's appliance: the
// port netbootd serves on, on the host's loopback.
const webPort = 5054

// forward makes the appliance's HTTP API (and web view) reachable from
// this host at http://127.0.0.1:webPort, or on the next free port when a
// program of the host (a netbootd of its own) holds that one: a forwarder
// on the host's loopback whose connections are made inside the testbed's
// namespace, to the AM only. It stops with the demo, before the testbed
// is torn down. It returns the forwarder's base URL.
func forward(t testing.TB, tb *vtestbed.Testbed) string {
	ln, err := nsproxy.Listen(webPort, 20)
	if err != nil {
		t.Fatal(err)
	}
	if p := nsproxy.Port(ln); p != webPort {
		fmt.Printf("NOTE: 127.0.0.1:%d is taken on this host (is a netbootd running here?): the demo's appliance is on 127.0.0.1:%d instead\n", webPort, p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f := nsproxy.Forwarder{Netns: tb.Netns.Name, Target: tb.App.Addr, Logf: t.Logf}
	go func() { done <- f.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("forwarder: %v", err)
		}
	})
	return nsproxy.URL(ln, "")
}

// checkForwarded calls GET /api/v1/nodes with the admin token from this
// (the host's) namespace through the forwarder at base: a 200 listing
// the demo's nodes says the forwarder carries the API end to end.
func checkForwarded(base, token string, nodes []vtestbed.Node) error {
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/nodes", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("through the forwarder: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("through the forwarder: GET /api/v1/nodes: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("through the forwarder: GET /api/v1/nodes: %s: %s", resp.Status, body)
	}
	var got []apiv1.Node
	if err := json.Unmarshal(body, &got); err != nil {
		return fmt.Errorf("through the forwarder: GET /api/v1/nodes: %w", err)
	}
	for _, n := range nodes {
		if !slices.ContainsFunc(got, func(g apiv1.Node) bool { return g.HRN == n.HRN }) {
			return fmt.Errorf("through the forwarder: GET /api/v1/nodes lacks %s: %s", n.HRN, body)
		}
	}
	fmt.Printf("GET %s/api/v1/nodes (admin token), from this host through the forwarder: %s, %d nodes\n", base, resp.Status, len(got))
	return nil
}

// showWeb prints where the host's browser finds the appliance, and where
// the admin token to sign in with is (never the token itself).
func showWeb(base, tokenFile string) {
	fmt.Printf("Web view: %s/ui/   API: %s/api/v1/ (this host's loopback only)\n", base, base)
	fmt.Printf("Admin token (sign in with it): in %s, readable by root; or: bin/nbctl --server %s --token-file %s nodes\n", tokenFile, base, tokenFile)
}
