// Command demo is `make demo`: the virtual testbed the QEMU tests use
// (package vtestbed), driven the way an Experiment Controller and an
// operator would. netbootd runs in a network namespace of its own with DHCP
// on a bridge; two QEMU nodes (virtio-net and e1000) are pointed at the
// orbit-pxe image with the OMF call, powered on, netboot, and their
// Resource Controllers enroll; the demo prints what nbctl shows of them and
// stays up until Ctrl-C (DEMO_ONCE=1: it exits at the end).
//
// It needs root, /dev/net/tun and the packages make test installs.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

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
	nodes := []vtestbed.Node{vtestbed.NewNode(1, vtestbed.VirtioNet), vtestbed.NewNode(2, vtestbed.E1000)}
	step("Building the virtual testbed: a namespace, a bridge, netbootd (DHCP, TFTP, AM), the orbit-pxe image")
	tb := vtestbed.New(t, vtestbed.Options{Nodes: nodes, Image: image})
	nbctl := func(args ...string) {
		out, err := tb.App.Nbctl(args...)
		fmt.Printf("$ nbctl %v\n%s", args, out)
		if err != nil {
			t.Fatalf("nbctl %v: %v", args, err)
		}
	}
	nbctl("nodes")

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	step("The EC points both nodes at %s with OMF setBootImageNS", image)
	reply, err := tb.SetBootImageNS(ctx, image, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(reply)
	nbctl("boot", "list")

	step("Power on: both nodes netboot (TCG, so ~12-20 s)")
	for _, n := range nodes {
		tb.Boot(t, n, vtestbed.BootOptions{Order: "n"})
	}
	for _, n := range nodes {
		if _, _, err := tb.WaitEnrolled(ctx, n.HRN); err != nil {
			t.Fatalf("%s: %v", n.HRN, err)
		}
		fmt.Printf("%s (%s): RC enrolled %.1f s after start\n", n.HRN, n.NIC, time.Since(start).Seconds())
	}
	step("What the operator sees")
	nbctl("rc", "status")
	for _, n := range nodes {
		nbctl("nodes", "events", n.HRN)
	}
	fmt.Println("(Loading a disk image onto the nodes, nbctl load, joins the demo in a later step.)")

	if os.Getenv("DEMO_ONCE") == "1" {
		step("Done (DEMO_ONCE=1): tearing the testbed down")
		return
	}
	step("The testbed stays up; serial logs under %s. Ctrl-C tears it down.", tb.Dir)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
