package qemutests

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// lossPercent is how much of the node's traffic TestNetbootLossy drops.
const lossPercent = 5

// TestNetbootLossy: a node whose frames are dropped at random, 5 in 100
// each way on its tap (nftables in the testbed's namespace: this kernel has
// no netem), still netboots and its RC enrolls: DHCP (iPXE's, then its
// init's) retries, and kernel and initramfs come over HTTP from the iPXE
// script, whose TCP recovers a lost segment in milliseconds. (Over TFTP,
// lock-step, each lost block or ACK costs the 1 s retransmit timeout:
// measured, about a thousand of them for the initramfs, a quarter of an
// hour under TCG; pxelinux's path keeps its own scenarios.) The drop
// counters show that frames were lost on the way.
func TestNetbootLossy(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	testenv.Programs(t, "Debian: nftables", "nft")
	start := time.Now()
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image, IPXEScript: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	node = tb.Node(node.Hostname)

	// The node's frames reach netbootd (on the bridge itself) through the
	// bridge's input hook and come back through its output hook.
	nft := func(args ...string) (string, error) {
		out, err := tb.Netns.Command(ctx, "nft", args...).CombinedOutput()
		if err != nil {
			err = fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return string(out), err
	}
	if _, err := nft("add", "table", "bridge", "loss"); err != nil {
		testenv.Missing(t, "no nftables bridge filter in this kernel: %v", err)
	}
	mustNft := func(args ...string) string {
		t.Helper()
		out, err := nft(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, c := range []struct{ chain, hook, dir string }{
		{"from_node", "input", "iifname"}, {"to_node", "output", "oifname"}, {"through", "forward", "iifname"},
	} {
		mustNft("add", "chain", "bridge", "loss", c.chain, "{ type filter hook "+c.hook+" priority 0; }")
		mustNft("add", "rule", "bridge", "loss", c.chain, c.dir, node.Tap, "counter", "numgen", "random", "mod", "100", "<", strconv.Itoa(lossPercent), "counter", "drop")
	}
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "n"})
	_, enrolledAt, err := tb.WaitEnrolled(ctx, node.HRN)
	if err != nil {
		t.Fatalf("%v\nserial:\n%s", err, vm.Console.Text())
	}
	evs, err := tb.Events(ctx, node.HRN)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vtestbed.InOrder(evs, append(vtestbed.IPXEScriptSteps(*tb.Image), vtestbed.EnrolledStep)...); err != nil {
		t.Fatalf("%v\ntimeline:\n%s", err, timeline(evs))
	}
	t.Logf("enrolled %v after power-on; timeline:\n%s", vm.Since(enrolledAt).Round(10*time.Millisecond), timeline(evs))

	// Each rule counts the frames it saw, then the ones it dropped.
	counters := regexp.MustCompile(`counter packets (\d+) bytes \d+ .*counter packets (\d+) bytes \d+ drop`)
	var seen, dropped int
	for _, m := range counters.FindAllStringSubmatch(mustNft("list", "table", "bridge", "loss"), -1) {
		s, _ := strconv.Atoi(m[1])
		d, _ := strconv.Atoi(m[2])
		seen, dropped = seen+s, dropped+d
	}
	t.Logf("%d of the node's %d frames dropped (%.1f%%); scenario took %v", dropped, seen, 100*float64(dropped)/float64(max(seen, 1)),
		time.Since(start).Round(time.Millisecond))
	if seen < 100 || dropped == 0 {
		t.Fatalf("the loss rules saw %d frames and dropped %d: the node's traffic did not go through them", seen, dropped)
	}
}
