package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestMetricsEndToEnd runs netbootd with DHCP, TFTP and the AM in a server
// namespace and a node's traffic from a client namespace: a DHCP lease
// (busybox udhcpc), the kernel over TFTP and over HTTP, a missing file,
// API calls. /metrics, scraped before and after, passes promtool (when
// Debian's prometheus package is installed) and the client library's
// parser, and every counter moved by what the node did.
func TestMetricsEndToEnd(t *testing.T) {
	testenv.Root(t, "network namespaces")
	testenv.Programs(t, "make test installs them", "ip", "busybox")
	const mac, nodeIP = "00:03:1d:0c:01:02", "10.18.1.2"
	srv, cli := vethLab(t, "nbm", mac)
	a := apptest.New(t, apptest.Options{Netns: srv, HTTPHost: "10.18.0.1", TFTP: true, TFTPHost: "10.18.0.1", Images: []string{"orbit-2.0.0"},
		Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-2.sb8.orbit-lab.org, hostname: node1-2, control_ip: ` + nodeIP + `, control_mac: "` + mac + `", pxe_image: orbit-2.0.0 }
`, Extra: apptest.DHCP{Interface: "nbs0", Server: netip.MustParseAddr("10.18.0.1"), Subnet: netip.MustParsePrefix("10.18.0.0/16")}.YAML()})
	kernel := bytes.Repeat([]byte("kernel."), 100_000)
	if err := os.WriteFile(filepath.Join(a.TFTPRoot, "linux-orbit-2.0.0"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	a.Start()
	in := func(ns string, args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
		return string(out), err
	}
	// inCli runs a command in the client namespace, as the node.
	inCli := func(args ...string) (string, error) { return in(cli, args...) }
	// getFrom fetches path from the AM in namespace ns, with token ("":
	// none); get does from the server's own namespace (the operator's
	// side: the node has no address before its lease).
	getFrom := func(ns, path, token string) (string, error) {
		args := []string{"busybox", "wget", "-q", "-O", "-"}
		if token != "" {
			args = append(args, "--header", "Authorization: Bearer "+token)
		}
		return in(ns, append(args, a.URL+path)...)
	}
	get := func(path, token string) (string, error) { return getFrom(srv, path, token) }
	if out, err := get("/metrics", ""); err == nil {
		t.Errorf("/metrics answered without a token:\n%.300s", out)
	}
	before := scrape(t, get, a.Token)

	// The node's boot: a lease, then its kernel over TFTP and over HTTP,
	// and a file that is not there.
	script := filepath.Join(t.TempDir(), "udhcpc.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && echo \"lease ip=$ip\"\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := inCli("busybox", "udhcpc", "-i", "nbc0", "-f", "-q", "-n", "-t", "20", "-T", "3", "-s", script); err != nil || !strings.Contains(out, "lease ip="+nodeIP) {
		t.Fatalf("udhcpc: %v\n%s\nnetbootd:\n%s", err, out, a.Log)
	}
	sh(t, "ip", "-n", cli, "addr", "add", nodeIP+"/16", "dev", "nbc0")
	host, port, _ := strings.Cut(a.TFTPAddr, ":")
	local := filepath.Join(t.TempDir(), "kernel")
	if out, err := inCli("busybox", "tftp", "-g", "-b", "1408", "-r", "linux-orbit-2.0.0", "-l", local, host, port); err != nil {
		t.Fatalf("tftp: %v %s", err, out)
	}
	if out, err := inCli("busybox", "tftp", "-g", "-r", "no-such-file", "-l", local+".none", host, port); err == nil {
		t.Errorf("tftp of a missing file succeeded: %s", out)
	}
	if out, err := getFrom(cli, "/boot/linux-orbit-2.0.0", ""); err != nil || len(out) != len(kernel) {
		t.Fatalf("HTTP boot file: %v, %d bytes", err, len(out))
	}
	// API calls: three reads of a route, one of a node that is not there.
	for range 3 {
		if _, err := get("/api/v1/nodes", a.Token); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := get("/api/v1/nodes/no-such-node", a.Token); err == nil {
		t.Error("a missing node was found")
	}

	// The transfers are counted when the server has seen their end, and
	// the boot phases when the timeline's events are committed: wait for
	// the last of them.
	var after map[string]float64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		after = scrape(t, get, a.Token)
		if after[`netbootd_boot_phase_seconds_count{phase="kernel"}`] > 0 && after[`netbootd_boot_file_transfers_total{outcome="not_found",protocol="tftp"}`] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node's boot was not counted; last scrape:\n%v\nnetbootd:\n%s", after, a.Log)
		}
	}
	events, err := a.Nbctl("nodes", "events", "node1-2.sb8.orbit-lab.org")
	if err != nil {
		t.Fatal(err)
	}
	// udhcpc may send its DISCOVER and REQUEST again: the timeline has
	// every exchange, which the counters must match.
	offers, acks := strings.Count(events, "DHCPOFFER"), strings.Count(events, "DHCPACK")
	if offers == 0 || acks == 0 {
		t.Fatalf("timeline lacks the DHCP exchange:\n%s", events)
	}
	moved := func(key string) float64 { return after[key] - before[key] }
	for _, tt := range []struct {
		key  string
		want float64
	}{
		{`netbootd_dhcp_packets_total{outcome="replied",type="DISCOVER"}`, float64(offers)},
		{`netbootd_dhcp_packets_total{outcome="replied",type="REQUEST"}`, float64(acks)},
		{`netbootd_boot_file_transfers_total{outcome="ok",protocol="tftp"}`, 1},
		{`netbootd_boot_file_transfers_total{outcome="not_found",protocol="tftp"}`, 1},
		{`netbootd_boot_file_bytes_total{protocol="tftp"}`, float64(len(kernel))},
		{`netbootd_boot_file_transfer_duration_seconds_count{protocol="tftp"}`, 1}, // the kernel's, not the probe's
		{`netbootd_boot_file_transfers_total{outcome="ok",protocol="http"}`, 1},
		{`netbootd_boot_file_bytes_total{protocol="http"}`, float64(len(kernel))},
		{`netbootd_http_requests_total{method="GET",route="/api/v1/nodes",status="200"}`, 3},
		{`netbootd_http_requests_total{method="GET",route="/api/v1/nodes/:hrn",status="404"}`, 1},
		{`netbootd_http_request_duration_seconds_count{method="GET",route="/api/v1/nodes"}`, 3},
		// One boot: each phase once, though the kernel came twice.
		{`netbootd_boot_phase_seconds_count{phase="dhcpack"}`, 1},
		{`netbootd_boot_phase_seconds_count{phase="kernel"}`, 1},
		{`netbootd_boot_phase_seconds_count{phase="enrolled"}`, 0},
		{`netbootd_rc_enrolled{state="online"}`, 0},
		{`netbootd_dhcp_leases{state="bound"}`, 0}, // the node has its reserved address, not a pool lease
		{`netbootd_imaging_sessions_active`, 0},
	} {
		if got := moved(tt.key); got != tt.want {
			t.Errorf("%s moved by %v, want %v", tt.key, got, tt.want)
		}
	}
	// The unauthenticated scrape and the first one were counted too.
	if got := after[`netbootd_http_requests_total{method="GET",route="/metrics",status="401"}`]; got != 1 {
		t.Errorf("refused scrapes counted %v, want 1", got)
	}
	for key := range after {
		if strings.Contains(key, "no-such") {
			t.Errorf("a raw path became a label: %s", key)
		}
	}
	checkDashboard(t, after)
}

// checkDashboard checks that every netbootd metric the example Grafana
// dashboard queries is one netbootd serves.
func checkDashboard(t *testing.T, served map[string]float64) {
	t.Helper()
	data := testenv.ReadFile(t, filepath.Join(testenv.SourceTree(t), "examples", "grafana-dashboard.json"))
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(data), &dash); err != nil {
		t.Fatalf("examples/grafana-dashboard.json: %v", err)
	}
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range metricName.FindAllString(tg.Expr, -1) {
				queried++
				name = strings.TrimSuffix(name, "_bucket")
				found := false
				for key := range served {
					found = found || key == name || strings.HasPrefix(key, name+"{") || strings.HasPrefix(key, name+"_count")
				}
				if !found {
					t.Errorf("dashboard panel %q queries %s, which netbootd does not serve", p.Title, name)
				}
			}
		}
	}
	if queried < 10 {
		t.Errorf("the dashboard queries %d netbootd metrics", queried)
	}
}

var metricName = regexp.MustCompile(`netbootd_[a-z_]+`)

// scrape reads /metrics with get, checks it with promtool when installed
// and with the client library's parser, and returns every sample by its
// name and sorted labels (histograms: _count and _sum).
func scrape(t *testing.T, get func(path, token string) (string, error), token string) map[string]float64 {
	t.Helper()
	text, err := get("/metrics", token)
	if err != nil {
		t.Fatalf("scrape: %v\n%.500s", err, text)
	}
	if _, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("no promtool (Debian package prometheus): the text is checked by the parser alone")
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, mf := range families {
		checkFamily(t, name, mf)
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := func(suffix string) string {
				if len(labels) == 0 {
					return name + suffix
				}
				return name + suffix + "{" + strings.Join(labels, ",") + "}"
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// checkFamily checks netbootd's own metric families against Prometheus'
// naming conventions: the namespace, _total on counters alone, base units.
func checkFamily(t *testing.T, name string, mf *dto.MetricFamily) {
	t.Helper()
	if !strings.HasPrefix(name, "netbootd_") {
		return // the Go runtime's and the process's, and promhttp's own
	}
	counter := mf.GetType() == dto.MetricType_COUNTER
	if counter != strings.HasSuffix(name, "_total") {
		t.Errorf("%s is a %v: counters, and only they, end in _total", name, mf.GetType())
	}
	for _, bad := range []string{"_ms", "_milliseconds", "_kb", "_mb", "_bytes_bytes"} {
		if strings.Contains(name, bad) {
			t.Errorf("%s: not in base units", name)
		}
	}
	if mf.GetHelp() == "" {
		t.Errorf("%s has no help", name)
	}
}
