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
// no netem), still netboots (DHCP, pxelinux, kernel and initramfs over
// TFTP, its init's DHCP) and its RC enrolls; the drop counters show that
// frames were lost on the way.
func TestNetbootLossy(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	testenv.Programs(t, "Debian: nftables", "nft")
	start := time.Now()
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image})
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
	netboot(ctx, t, tb, node)

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
