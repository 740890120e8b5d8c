package metrics

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ev is one timeline event, at seconds after t0.
type ev struct {
	node         string
	sec          float64
	source, what string
}

// TestBootPhases: each phase is observed once per boot, measured from its
// start (power on, or the first DISCOVER), and a new boot starts after
// enrollment or a power on.
func TestBootPhases(t *testing.T) {
	tests := []struct {
		name   string
		events []ev
		// want: per phase, the observations' count and sum.
		want map[string][2]float64
	}{
		{"a netboot from the first DISCOVER", []ev{
			{"n1", 0, "dhcp", "DHCPOFFER"}, {"n1", 2, "dhcp", "DHCPACK"},
			{"n1", 3, "tftp", "pxelinux.0"}, {"n1", 4, "dhcp", "DHCPOFFER"}, {"n1", 5, "dhcp", "DHCPACK"},
			{"n1", 9, "tftp", "linux-orbit-2.0.1"}, {"n1", 10, "tftp", "initramfs-orbit-2.0.1.gz"},
			{"n1", 30, "rc", "enrolled"},
		}, map[string][2]float64{PhaseDHCPAck: {1, 2}, PhaseKernel: {1, 9}, PhaseEnrolled: {1, 30}}},
		{"from power on", []ev{
			{"n1", 0, "power", "on"}, {"n1", 20, "dhcp", "DHCPOFFER"}, {"n1", 21, "dhcp", "DHCPACK"},
			{"n1", 25, "http", "boot/vmlinuz"},
		}, map[string][2]float64{PhaseDHCPAck: {1, 21}, PhaseKernel: {1, 25}}},
		{"two boots, the second after enrollment", []ev{
			{"n1", 0, "dhcp", "DHCPOFFER"}, {"n1", 1, "dhcp", "DHCPACK"}, {"n1", 10, "rc", "enrolled"},
			{"n1", 100, "dhcp", "DHCPOFFER"}, {"n1", 104, "dhcp", "DHCPACK"}, {"n1", 120, "rc", "enrolled"},
		}, map[string][2]float64{PhaseDHCPAck: {2, 5}, PhaseEnrolled: {2, 30}}},
		{"events without a start are not observed", []ev{
			{"n2", 0, "dhcp", "DHCPACK"}, {"n2", 1, "rc", "enrolled"},
		}, map[string][2]float64{}},
		{"a power off ends the boot", []ev{
			{"n1", 0, "dhcp", "DHCPOFFER"}, {"n1", 1, "power", "offHard"}, {"n1", 2, "dhcp", "DHCPACK"},
		}, map[string][2]float64{}},
		{"two nodes apart", []ev{
			{"a", 0, "dhcp", "DHCPOFFER"}, {"b", 5, "dhcp", "DHCPOFFER"}, {"a", 6, "dhcp", "DHCPACK"}, {"b", 6, "dhcp", "DHCPACK"},
		}, map[string][2]float64{PhaseDHCPAck: {2, 7}}},
	}
	t0 := time.Unix(1_000_000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			for _, e := range tt.events {
				m.BootEvent(e.node, t0.Add(time.Duration(e.sec*float64(time.Second))), e.source, e.what)
			}
			for _, phase := range []string{PhaseDHCPAck, PhaseKernel, PhaseEnrolled} {
				count, sum := histogram(t, m, "netbootd_boot_phase_seconds", "phase", phase)
				if w := tt.want[phase]; count != w[0] || sum != w[1] {
					t.Errorf("phase %s: %v observations summing %vs, want %v", phase, count, sum, w)
				}
			}
		})
	}
}

// histogram is the count and sum of the histogram name's series whose
// label is value.
func histogram(t *testing.T, m *Metrics, name, label, value string) (count, sum float64) {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return float64(s.GetHistogram().GetSampleCount()), s.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	return 0, 0
}

func TestIsKernel(t *testing.T) {
	for file, want := range map[string]bool{
		"linux-orbit-2.0.1": true, "boot/vmlinuz-6.1": true, "bzImage": true, "Image": true,
		"pxelinux.0": false, "ldlinux.c32": false, "initramfs-orbit-2.0.1.gz": false, "linux-initrd.img": false,
		"grub/grub.cfg": false, "grubx64.efi": false, "pxelinux.cfg/0A120102": false,
	} {
		if got := isKernel(file); got != want {
			t.Errorf("isKernel(%q) = %v, want %v", file, got, want)
		}
	}
}

// TestCounters: each method moves its series by what it was given, and
// HTTPRequest folds unmatched requests into one series.
func TestCounters(t *testing.T) {
	m := New()
	m.DHCPPacket("DISCOVER", Replied)
	m.DHCPPacket("DISCOVER", Replied)
	m.DHCPDrop(Unparsed, DropMalformed)
	m.Transfer("tftp", TransferOK, 1000, time.Second)
	m.Transfer("tftp", TransferError, 24, time.Second)
	m.HTTPRequest("GET", "/api/v1/nodes/:hrn", 200, time.Millisecond)
	m.HTTPRequest("BREW", "", 404, time.Millisecond)
	m.HTTPRequest("GET", "", 404, time.Millisecond)
	m.ImagingBytes("load", 4096)
	m.ImagingSessionStarted()
	m.ImagingSessionStarted()
	m.ImagingSessionEnded()
	for _, tt := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.dhcpPackets.WithLabelValues("DISCOVER", Replied)), 2, "DISCOVER replied"},
		{testutil.ToFloat64(m.dhcpPackets.WithLabelValues(Unparsed, Dropped)), 1, "unknown dropped"},
		{testutil.ToFloat64(m.dhcpDrops.WithLabelValues(DropMalformed)), 1, "malformed drops"},
		{testutil.ToFloat64(m.transfers.WithLabelValues("tftp", TransferOK)), 1, "tftp ok"},
		{testutil.ToFloat64(m.transferBytes.WithLabelValues("tftp")), 1024, "tftp bytes"},
		{first(histogram(t, m, "netbootd_boot_file_transfer_duration_seconds", "protocol", "tftp")), 1, "tftp durations (the whole transfer's only)"},
		{testutil.ToFloat64(m.httpRequests.WithLabelValues("GET", "/api/v1/nodes/:hrn", "200")), 1, "a route's requests"},
		{testutil.ToFloat64(m.httpRequests.WithLabelValues("other", "unmatched", "404")), 2, "unmatched requests"},
		{testutil.ToFloat64(m.imagingBytes.WithLabelValues("load")), 4096, "imaging bytes"},
		{testutil.ToFloat64(m.imagingSessions), 1, "imaging sessions"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.what, tt.got, tt.want)
		}
	}
}

// TestNil: a nil *Metrics takes every call and does nothing.
func TestNil(t *testing.T) {
	var m *Metrics
	m.DHCPPacket("DISCOVER", Replied)
	m.DHCPDrop(Unparsed, DropOverload)
	m.Transfer("http", TransferOK, 1, time.Second)
	m.HTTPRequest("GET", "/x", 200, time.Second)
	m.ImagingBytes("save", 1)
	m.ImagingSessionStarted()
	m.ImagingSessionEnded()
	m.BootEvent("n", time.Now(), "dhcp", "DHCPOFFER")
}

// TestCollectGauges: gauges are read from their source at each scrape; a
// failing source leaves its gauge out and the rest are served.
func TestCollectGauges(t *testing.T) {
	m := New()
	leases := map[string]float64{"bound": 3, "offered": 1}
	m.CollectGauges("dhcp_leases", "Leases by state.", "state", func(context.Context) (map[string]float64, error) { return leases, nil })
	want := `# HELP netbootd_dhcp_leases Leases by state.
# TYPE netbootd_dhcp_leases gauge
netbootd_dhcp_leases{state="bound"} 3
netbootd_dhcp_leases{state="offered"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "netbootd_dhcp_leases"); err != nil {
		t.Error(err)
	}
	leases["bound"] = 4
	if n, err := testutil.GatherAndCount(m.Registry(), "netbootd_dhcp_leases"); err != nil || n != 2 {
		t.Errorf("leases gathered: %d series, %v", n, err)
	}
	m.CollectGauges("rc_enrolled", "Enrolled RCs.", "state", func(context.Context) (map[string]float64, error) { return nil, errors.New("database gone") })
	mfs, err := m.Registry().Gather()
	if n := len(mfs); n < 10 {
		t.Errorf("gather with a failing source: %d families, want the rest served", n)
	}
	if err == nil || !strings.Contains(err.Error(), "database gone") {
		t.Errorf("gather with a failing source: %v, want its error", err)
	}
}

func first(a, _ float64) float64 { return a }
