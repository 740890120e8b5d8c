// Package browsertest drives netbootd's web view (am/webui) in headless
// Chromium for tests, through chromedp: it starts the browser with a
// fresh profile, signs in as the page asks, waits for what the page
// shows, and keeps screenshots.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// Start runs headless Chromium with a window of width by height until the
// test ends, with more options if given (flags). It returns a tab, and a
// function that opens a fresh tab in a browser context of its own (its own
// sessionStorage: another user).
func Start(t testing.TB, width, height int, more ...chromedp.ExecAllocatorOption) (context.Context, func() context.Context) {
	t.Helper()
	exe := "/usr/lib/chromium/chromium" // Debian's binary, without its wrapper script
	if _, err := os.Stat(exe); err != nil {
		p, err := exec.LookPath("chromium")
		if err != nil {
			testenv.Missing(t, "needs chromium (Debian: chromium; make test installs it)")
		}
		exe = p
	}
	// As root, without the sandbox (it needs user namespaces a container
	// may refuse); nothing reaches out to Google's services.
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	}
	opts = append(opts, more...)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action on a context starts the browser.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	tab := func() context.Context {
		c, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		return c
	}
	return ctx, tab
}

// Do runs steps, failing the test with what.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Wait polls a JavaScript predicate until it holds, for up to limit (0:
// 30 s): a state the page never reaches fails rather than hangs.
func Wait(expr string, limit time.Duration) chromedp.Action[chromedp.Void] {
	if limit == 0 {
		limit = 30 * time.Second
	}
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(limit))
}

// Eval evaluates a JavaScript expression.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// CellState is a predicate: the grid cell of node hrn shows state.
func CellState(hrn, state string) string {
	return fmt.Sprintf(`document.querySelector('.cell[data-hrn=%q]')?.dataset.state === %q`, hrn, state)
}

// SignIn opens base's / as a browser does (Accept: text/html, which
// netbootd redirects to /ui/), signs in with token and waits for the
// grid.
func SignIn(t testing.TB, ctx context.Context, base, token string) {
	t.Helper()
	Do(t, ctx, "open /", chromedp.Navigate(base+"/"))
	Do(t, ctx, "the sign-in form", chromedp.WaitVisible(chromedp.ID("token")))
	Do(t, ctx, "type the token", chromedp.SendKeys(chromedp.ID("token"), token))
	Do(t, ctx, "submit", chromedp.Click(chromedp.CSS(`#signin button[type="submit"]`)))
	Do(t, ctx, "signed in", Wait(`document.getElementById("who").textContent !== "" && document.querySelector(".cell") !== null`, 0))
	if loc := Eval[string](t, ctx, "location.pathname"); loc != "/ui/" {
		t.Errorf("GET / in a browser ended at %s, want /ui/", loc)
	}
}

// Screenshot saves the whole page as name (PNG) in $WEBUI_ARTIFACTS if
// set, else in a temporary directory of the test, and logs where.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("WEBUI_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}
