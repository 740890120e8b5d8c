package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
)

// TestTFTPBootTimeline runs netbootd with its TFTP server on loopback. The
// node's control IP is 127.0.0.1, so the real clients' reads land on its
// timeline, as a netbooting node's would: the link the EC set, then the
// files that config names.
func TestTFTPBootTimeline(t *testing.T) {
	a := apptest.New(t, apptest.Options{TFTP: true, Images: []string{"orbit-2.0.0"}, Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, control_ip: 127.0.0.1, control_mac: "00:03:1d:0c:01:01", pxe_image: orbit-2.0.0 }
`})
	kernel := bytes.Repeat([]byte("kernel-bytes."), 700_000) // 9 MB
	if err := os.WriteFile(filepath.Join(a.TFTPRoot, "linux-orbit-pxe"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Start()

	resp, err := http.Get(a.URL + "/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("setBootImageNS: %v %v", err, resp)
	}
	resp.Body.Close()

	c, err := tftp.NewClient(a.TFTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1408) // as pxelinux asks
	c.RequestTSize(true)
	get := func(name string) []byte {
		t.Helper()
		wt, err := c.Receive(name, "octet")
		if err != nil {
			t.Fatalf("RRQ %s: %v", name, err)
		}
		var buf bytes.Buffer
		if _, err := wt.WriteTo(&buf); err != nil {
			t.Fatalf("RRQ %s: %v", name, err)
		}
		return buf.Bytes()
	}
	if _, err := c.Receive("pxelinux.cfg/01-00-03-1d-0c-01-01", "octet"); err == nil {
		t.Fatal("a missing file was served")
	}
	cfg := get("/pxelinux.cfg/7F000001") // absolute, as pxelinux may send it
	if !strings.Contains(string(cfg), "KERNEL linux-orbit-2.0.0") {
		t.Fatalf("the link served %q", cfg)
	}
	if got := get("linux-orbit-pxe"); !bytes.Equal(got, kernel) {
		t.Fatalf("kernel: got %d bytes, want %d", len(got), len(kernel))
	}
	if _, err := exec.LookPath("tftp"); err == nil { // tftp-hpa, as a second real client
		out := filepath.Join(t.TempDir(), "cfg")
		host, port, _ := strings.Cut(a.TFTPAddr, ":")
		if b, err := exec.Command("tftp", "-m", "binary", host, port, "-c", "get", "pxelinux.cfg/7F000001", out).CombinedOutput(); err != nil {
			t.Errorf("tftp-hpa: %v %s", err, b)
		} else if got, _ := os.ReadFile(out); !bytes.Equal(got, cfg) {
			t.Errorf("tftp-hpa got %q", got)
		}
	}

	evs, err := amclient.New(a.URL).WithToken(a.Token).Events(context.Background(), "node1-1.sb8", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		got = append(got, e.Source+" "+e.What)
	}
	want := []string{"tftp pxelinux.cfg/7F000001", "tftp linux-orbit-pxe"}
	if len(got) < 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("timeline = %q, want it to start %q", got, want)
	}
	if len(evs) > 0 && !strings.Contains(evs[1].Detail, "9100000 bytes, blksize 1408") {
		t.Errorf("kernel event detail %q", evs[1].Detail)
	}
}

// TestTFTPRetriesConfigured: tftp.retries (and tftp.timeout) reach the
// server: a client that never ACKs is sent the first block once and then
// as many times again as configured, not the default five.
func TestTFTPRetriesConfigured(t *testing.T) {
	a := apptest.New(t, apptest.Options{TFTP: true, TFTPMore: "timeout: 50ms, retries: 2", Inventory: "testbeds: []\n"})
	if err := os.WriteFile(filepath.Join(a.TFTPRoot, "pxelinux.0"), bytes.Repeat([]byte("x"), 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	a.Start()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, err := net.ResolveUDPAddr("udp4", a.TFTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.WriteToUDP([]byte("\x00\x01pxelinux.0\x00octet\x00"), server); err != nil {
		t.Fatal(err)
	}
	sends := 0
	buf := make([]byte, 2048)
	for {
		// Far longer than the timeout: a gap this long is the end.
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if n >= 4 && buf[1] == 3 && buf[2] == 0 && buf[3] == 1 { // DATA, block 1
			sends++
		}
	}
	if sends != 3 {
		t.Errorf("block 1 sent %d times, want once and 2 retries", sends)
	}
	// The operator sees them counted: the metric a lossy grid shows on.
	r := a.Call(t, http.MethodGet, "/metrics", "", nil)
	if !strings.Contains(r.Body, "\nnetbootd_tftp_unacked_datagrams_total 3\n") {
		t.Errorf("/metrics (%d) does not count the 3 datagrams unacknowledged", r.Status)
	}
}
