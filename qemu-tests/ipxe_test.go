package qemutests

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// TestIPXEScriptNetboot: a BIOS node whose NIC ROM is QEMU's iPXE, with
// dhcp.ipxe_script on: DHCP names its script (http://10.18.0.1:5054/ipxe/
// <HEX>), the AM renders it from the node's link, iPXE fetches kernel and
// initramfs over HTTP from /boot/, the kernel command line carries the
// script's BOOTIF= and ip= (boot server: the appliance), and the RC
// enrolls; no TFTP on the timeline at all.
func TestIPXEScriptNetboot(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image, IPXEScript: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "n"})
	cmdline := regexp.MustCompile(`Kernel command line: .*BOOTIF=01-` + regexp.QuoteMeta(strings.ReplaceAll(node.MAC, ":", "-")) + ` ip=` +
		regexp.QuoteMeta(node.IP.String()) + `:` + regexp.QuoteMeta(vtestbed.ServerIP.String()) + `:`)
	if _, err := vm.Wait(ctx, cmdline); err != nil {
		t.Fatalf("kernel command line: %v\nserial:\n%s", err, vm.Console.Text())
	}
	if _, _, err := tb.WaitEnrolled(ctx, node.HRN); err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vtestbed.InOrder(evs, append(vtestbed.IPXEScriptSteps(*tb.Image), vtestbed.EnrolledStep)...); err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	for _, e := range evs {
		if e.Source == "tftp" {
			t.Errorf("TFTP on an iPXE-script boot: %s %s %s", e.Source, e.What, e.Detail)
		}
	}
	t.Logf("timeline:\n%s", timeline(evs))
}
