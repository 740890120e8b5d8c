package qemutests

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orbit-lab/netboot/internal/browsertest"
	"github.com/orbit-lab/netboot/qemu-tests/vtestbed"
)

// TestWebViewNetboot: while a QEMU node netboots in the virtual testbed,
// the web view's grid cell of that node goes through the netboot's states
// (DHCP, boot files, kernel) to enrolled, live, with no reload; its page
// then shows its timeline. The browser runs on the host and reaches
// netbootd in the testbed's namespace through a loopback forwarder, as
// `make demo` does.
func TestWebViewNetboot(t *testing.T) {
	vtestbed.Require(t, vtestbed.Netbootd)
	node := vtestbed.NewNode(1, vtestbed.VirtioNet)
	tb := vtestbed.New(t, vtestbed.Options{Nodes: []vtestbed.Node{node}, Image: image})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := tb.SetBootImageNS(ctx, image, node); err != nil {
		t.Fatal(err)
	}
	url := forward(t, tb, tb.App.Addr)
	page, _ := browsertest.Start(t, 1280, 800)
	browsertest.SignIn(t, page, url, tb.App.Token)
	// Every state the cell takes, in order, as the page paints it; and a
	// mark that a reload would wipe.
	browsertest.Do(t, page, "watch the cell", chromedp.Evaluate[chromedp.Void](`(() => {
		window.notReloaded = true;
		window.states = [];
		const cell = document.querySelector('.cell[data-hrn="`+node.HRN+`"]');
		const note = () => { const s = cell.dataset.state; if (window.states[window.states.length - 1] !== s) window.states.push(s); };
		note();
		new MutationObserver(note).observe(cell, { attributes: true, attributeFilter: ["data-state"] });
	})()`))

	vm := tb.Boot(t, node, vtestbed.BootOptions{Order: "n"})
	if err := chromedp.Do(page, browsertest.Wait(browsertest.CellState(node.HRN, "enrolled"), 150*time.Second)); err != nil {
		t.Fatalf("the cell did not reach enrolled: %v (states %v)\nserial:\n%s", err, browsertest.Eval[[]string](t, page, "window.states"), vm.Console.Text())
	}
	states := browsertest.Eval[[]string](t, page, "window.states")
	t.Logf("the cell's states: %v", states)
	// The netboot's states in order (the page may paint a burst of events
	// at once, so each need not show, but they may not go backwards).
	order := map[string]int{"unknown": 0, "dhcp": 1, "bootfiles": 2, "kernel": 3, "enrolled": 4}
	for i, s := range states {
		if _, ok := order[s]; !ok || (i > 0 && order[s] < order[states[i-1]]) {
			t.Errorf("the cell went %v", states)
			break
		}
	}
	if len(states) < 3 || !strings.Contains(strings.Join(states, " "), "kernel") {
		t.Errorf("the cell went %v: not through the netboot (kernel at least) before enrolled", states)
	}
	if !browsertest.Eval[bool](t, page, "window.notReloaded === true") {
		t.Error("the page reloaded")
	}
	browsertest.Screenshot(t, page, "qemu-grid.png")
	browsertest.Do(t, page, "the node page", chromedp.Evaluate[chromedp.Void](`location.hash = "#/node/`+node.HRN+`"`),
		browsertest.Wait(`[...document.querySelectorAll("#timeline td")].some(td => td.textContent === "enrolled")`, 0))
	whats := strings.Join(browsertest.Eval[[]string](t, page, `[...document.querySelectorAll("#timeline tbody tr")].map(r => r.children[3].textContent)`), " ")
	for _, want := range []string{"DHCPACK", "pxelinux.0", tb.Image.Kernel, "enrolled"} {
		if !strings.Contains(whats, want) {
			t.Errorf("the node page's timeline has no %q: %s", want, whats)
		}
	}
	if got := browsertest.Eval[string](t, page, `document.getElementById("phases").textContent`); !strings.HasPrefix(got, "Last boot: DHCP → ") || !strings.Contains(got, "→ kernel (+") || !strings.Contains(got, "→ enrolled (+") {
		t.Errorf("the node page's last boot: %q", got)
	}
	browsertest.Screenshot(t, page, "qemu-node.png")
}

// forward listens on a loopback port of the host and connects each
// connection to addr inside the testbed's namespace; it returns the
// port's URL. It ends with the test.
func forward(t *testing.T, tb *vtestbed.Testbed, addr string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := tb.Netns.Dial(ctx, "tcp", addr)
				if err != nil {
					t.Logf("forward: %v", err)
					return
				}
				defer up.Close()
				// When ctx ends, both sides close, and both copies end.
				stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
				defer stop()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(up, c) // ends when the browser closes
					if tc, ok := up.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
					close(done)
				}()
				if _, err := io.Copy(c, up); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Logf("forward: %v", err)
				}
				c.Close()
				<-done
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
