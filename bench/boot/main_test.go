package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// TestFilePhases: the boot-file phases of an iPXE boot over HTTP (one
// keep-alive connection: script, kernel, initramfs), the derived
// durations, and a request after the kernel ran (the RC's) left out.
func TestFilePhases(t *testing.T) {
	on := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return on.Add(time.Duration(ms) * time.Millisecond) }
	since := func(t time.Time) time.Duration { return t.Sub(on) }
	img := vtestbed.Image{Kernel: "linux-orbit-pxe-6.1.0-57-amd64", Initrd: "initramfs-orbit-pxe-2.0.0.gz"}
	pkts := []vtestbed.Packet{
		{At: at(2000), NodePort: 68, DHCP: vtestbed.DHCPOffer},
		{At: at(2100), FromNode: true, TCP: true, NodePort: 4000, Request: "/ipxe/0A120101"},
		{At: at(2150), TCP: true, NodePort: 4000, Payload: 300},
		{At: at(2200), FromNode: true, TCP: true, NodePort: 4000, Request: "/boot/" + img.Kernel},
		{At: at(2900), TCP: true, NodePort: 4000, Payload: 1448},
		{At: at(3000), FromNode: true, TCP: true, NodePort: 4000, Request: "/boot/" + img.Initrd},
		{At: at(3500), TCP: true, NodePort: 4000, Payload: 1448},
		{At: at(30000), FromNode: true, TCP: true, NodePort: 5000, Request: "/api/v1/rc/enroll"},
	}
	got := map[string]time.Duration{phInit: 20 * time.Second}
	files := filePhases(got, pkts, img, since)
	if strings.Join(files, " ") != "/ipxe/0A120101 /boot/"+img.Kernel+" /boot/"+img.Initrd {
		t.Errorf("files %q", files)
	}
	want := map[string]time.Duration{phFirst: 2100 * time.Millisecond, phKernelAsk: 2200 * time.Millisecond,
		phKernel: 2900 * time.Millisecond, phInitrd: 3500 * time.Millisecond}
	for p, d := range want {
		if got[p] != d {
			t.Errorf("%s = %v, want %v", p, got[p], d)
		}
	}
	got[phEnrolled] = 25 * time.Second
	d := derived(got)
	if d[dFetch] != 1400*time.Millisecond || d[dKI] != 1300*time.Millisecond || d[dEnroled] != 25*time.Second {
		t.Errorf("derived %v; want fetch 1.4s, kernel+initramfs 1.3s, enrolled 25s", d)
	}
}

// TestTargets: each target compares what issue 14 says, and says met or
// MISSED by its threshold.
func TestTargets(t *testing.T) {
	s := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	meds := map[mode]map[vtestbed.Server]map[string]time.Duration{
		biosTFTP: {
			vtestbed.Netbootd:    {"=" + dKI: s(6), "=" + dEnroled: s(20)},
			vtestbed.Dnsmasq:     {"=" + dKI: s(5), "=" + dEnroled: s(30)},
			vtestbed.DnsmasqIPXE: {"=" + dKI: s(7), "=" + dEnroled: s(20)},
		},
		biosIPXE: {vtestbed.Netbootd: {"=" + dKI: s(1), "=" + dEnroled: s(15.5)}},
		uefiPXE: {
			vtestbed.Netbootd: {"=" + dEnroled: s(30), "=" + dFetch: s(10)},
			vtestbed.Dnsmasq:  {"=" + dEnroled: s(31), "=" + dFetch: s(9)},
		},
	}
	var b bytes.Buffer
	targets(&b, meds)
	out := b.String()
	for _, want := range []string{
		"BIOS TFTP, netbootd enrolled within 12s of power-on: MISSED (20.00s)",
		"netbootd HTTP 1.00s vs TFTP (fastest: dnsmasq) 5.00s: 5.0x faster, want >= 5x: met",
		"netbootd iPXE-HTTP 15.50s vs dnsmasq-ipxe TFTP 20.00s: ratio 0.78, want <= 0.75 (25% less time): MISSED",
		"uefi-pxe enrolled, netbootd 30.00s vs dnsmasq 31.00s: ratio 0.968, want <= 1.000: met",
		"uefi-pxe fetch, netbootd 10.00s vs dnsmasq 9.00s: ratio 1.111, want <= 1.000: MISSED",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("targets lack %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "uefi-http") {
		t.Errorf("a target of a mode not run:\n%s", out)
	}
}
