package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/imaging"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
)

// Faults the appliance must survive while it images nodes (issue 15, 7):
// each test breaks netbootd or its disk in the middle of nbctl load or
// save against nodes whose reset starts an RC (vnode), and checks what is
// left: the boot links in the database and in cfg_dir, the stored images.

// randomData is n bytes that do not compress, the same for the same seed.
func randomData(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = r.Read(b)
	return b
}

// mountTmpfs mounts a tmpfs of size (mount's size=, e.g. 6m) on dir until
// the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	testenv.Root(t, "mounting a tmpfs")
	testenv.Programs(t, "Debian: mount", "mount", "umount")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Missing(t, "cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// leftovers lists what is in the image directory besides images and
// their checksums: uploads or temp files a failure left behind.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		stored := strings.HasSuffix(n, ".zst") || strings.HasSuffix(n, ".gz") || strings.HasSuffix(n, ".sha256")
		if strings.HasPrefix(n, ".") || !stored {
			out = append(out, n)
		}
	}
	return out
}

// TestSaveDiskFull: nbctl save --replace of a disk that does not fit in
// what is left of state_dir (a 6 MiB tmpfs) fails, saying the appliance's
// disk is full; the image of that name is the one stored before and still
// downloads whole, no upload is left in the image directory, and a save
// that fits works after.
func TestSaveDiskFull(t *testing.T) {
	n := newVnode(t, 1)
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: "testbeds:\n  - domain: vtb\n    nodes:\n" + n.inventory()})
	state := filepath.Join(a.Dir, "state")
	mountTmpfs(t, state, "6m")
	a.Start()
	n.run(a.URL)
	ctx := t.Context()

	old := randomData(1, 1<<20)
	img := filepath.Join(t.TempDir(), "old.zst")
	testenv.WriteFile(t, img, zstdtest.Compress(t, old))
	nbctlOK(ctx, t, a, "disk", "put", "--as-is", "old", img)

	n.writeDisk("disk0", randomData(2, 12<<20)) // compressed, still twice the tmpfs
	out, errs, err := nbctl(ctx, a, "save", "--node", n.hrn, "--image", "old", "--replace", "--disk", filepath.Join(n.dir, "disk0"), "--poll", "50ms")
	t.Logf("nbctl save onto a full disk: %v\n%s%s", err, out, errs)
	if err == nil {
		t.Fatalf("nbctl save of 12 MiB into a 6 MiB state_dir succeeded")
	}
	if !apptest.HasLine(out, n.hrn, "FAILED (saving)") || !strings.Contains(out, "disk image directory is full") ||
		!strings.Contains(out, "the stored image is unchanged") {
		t.Errorf("nbctl save does not say the appliance's disk is full:\n%s", out)
	}
	if !apptest.HasLine(a.Log.String(), "disk image upload refused", "no space left on device") {
		t.Errorf("netbootd does not log the refusal with its cause:\n%s", a.Log)
	}
	if !bytes.Equal(storedImage(ctx, t, a, "old"), old) {
		t.Errorf("image old changed")
	}
	if left := leftovers(t, filepath.Join(state, "images")); len(left) > 0 {
		t.Errorf("left in the image directory: %q", left)
	}

	// The appliance goes on: a disk that fits is stored.
	n.writeDisk("disk1", diskData("small"))
	nbctlOK(ctx, t, a, "save", "--node", n.hrn, "--image", "old", "--replace", "--disk", filepath.Join(n.dir, "disk1"), "--poll", "50ms")
	if !bytes.Equal(storedImage(ctx, t, a, "old"), diskData("small")) {
		t.Errorf("image old is not the disk saved after")
	}
}

// signalWriter collects what is written through it and closes hit the
// first time the text holds want.
type signalWriter struct {
	want string
	hit  chan struct{}
	once sync.Once
	buf  apptest.SyncBuffer
}

func (w *signalWriter) Write(p []byte) (int, error) {
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.hit) })
	}
	return n, err
}

// linksAgree checks that the boot links in cfg_dir are the ones the
// database holds, and returns those (HRN -> image).
func linksAgree(ctx context.Context, t *testing.T, a *apptest.Appliance) map[string]string {
	t.Helper()
	links, err := amclient.New(a.URL).WithToken(a.Token).Boot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	db, byHex := map[string]string{}, map[string]string{}
	for _, l := range links {
		db[l.HRN] = l.Image
		byHex[l.Hex] = l.Image
	}
	entries, err := os.ReadDir(a.CfgDir)
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]string{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(a.CfgDir, e.Name()))
		if err != nil {
			continue // an image's file
		}
		onDisk[e.Name()] = strings.TrimPrefix(target, "./")
	}
	if diff := cmp.Diff(byHex, onDisk); diff != "" {
		t.Errorf("cfg_dir and the database disagree (-database +cfg_dir):\n%s", diff)
	}
	return db
}

// TestLoadKilled: kill -9 of netbootd in the middle of nbctl load onto two
// nodes, while they netboot (their links set) and while they load (the
// RCs downloading the image), then netbootd started again at once: the
// load finishes or fails naming each failed node; either way no boot link
// of it is left, in the database or in cfg_dir, the stored image is whole
// and no upload or temp file is left beside it, and the next load
// finishes.
func TestLoadKilled(t *testing.T) {
	nodes, inv := newVnodes(t, 2)
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0"}, Inventory: inv})
	a.Start()
	for _, n := range nodes {
		n.run(a.URL)
	}
	ctx := t.Context()
	// Big enough that the RCs are still downloading it when the load
	// says they load (it polls every 50 ms).
	data := randomData(3, 48<<20)
	img := filepath.Join(t.TempDir(), "base.zst")
	testenv.WriteFile(t, img, zstdtest.Compress(t, data))
	nbctlOK(ctx, t, a, "disk", "put", "--as-is", "base", img)

	for _, tc := range []struct {
		name string
		// when: nbctl's progress says it (netbooting: the links are
		// set), or netbootd's log does (the RC was handed LOAD_IMAGE and
		// is downloading the image)
		when, log string
	}{
		{name: "while netbooting", when: "netbooting"},
		{name: "while the RC downloads the image", log: "type=LOAD_IMAGE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, n := range nodes {
				n.writeDisk("disk0", nil)
			}
			w := &signalWriter{want: tc.when, hit: make(chan struct{})}
			if tc.log != "" {
				w.want = "\x00never"
				logged := len(a.Log.String()) // the loads before logged theirs
				go func() {
					for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						if apptest.HasLine(a.Log.String()[logged:], "rc: command sent", tc.log) {
							w.once.Do(func() { close(w.hit) })
							return
						}
					}
				}()
			}
			type result struct {
				out  string
				errs map[string]error
			}
			done := make(chan result, 1)
			go func() {
				out, errs := loadDisk0(ctx, a, nodes, w)
				done <- result{out, errs}
			}()
			select {
			case <-w.hit:
			case r := <-done:
				t.Fatalf("the load ended before it was %s: %v\n%s%s", tc.name, r.errs, r.out, w.buf.String())
			}
			a.Kill()
			a.Start()
			r := <-done
			t.Logf("nbctl load, netbootd killed %s: %v\n%s%s", tc.name, r.errs, r.out, w.buf.String())
			checkAfterKill(ctx, t, a, data)
			for _, n := range nodes {
				loaded := bytes.Equal(n.readDisk("disk0"), data)
				err := r.errs[n.hrn]
				switch {
				case err == nil && !loaded:
					t.Errorf("%s: the load succeeded, yet its disk does not hold the image", n.hrn)
				case err != nil && !loaded && !apptest.HasLine(r.out, n.hrn, "FAILED") && !errors.Is(err, imaging.ErrPreflight):
					// Failed in the summary, or refused before the node
					// was touched.
					t.Errorf("%s: not loaded, yet neither the summary nor the error says it failed: %v\n%s", n.hrn, err, r.out)
				}
				t.Logf("%s: disk loaded after the kill: %v (%v)", n.hrn, loaded, err)
			}

			// The next attempt finishes.
			for _, n := range nodes {
				n.writeDisk("disk0", nil)
			}
			var errs apptest.SyncBuffer
			out, failed := loadDisk0(ctx, a, nodes, &errs)
			if len(failed) > 0 {
				t.Fatalf("the next load: %v\n%s%s", failed, out, errs.String())
			}
			for _, n := range nodes {
				if !bytes.Equal(n.readDisk("disk0"), data) {
					t.Errorf("%s: the next load did not write the image", n.hrn)
				}
			}
			checkAfterKill(ctx, t, a, data)
		})
	}
}

// loadDisk0 runs nbctl load of image base onto each node's disk0 file,
// one job per node (their disk files differ) at once, with bounds short
// enough for a test, writing their progress to stderr. It returns their
// summaries and each failed node's error.
func loadDisk0(ctx context.Context, a *apptest.Appliance, nodes []*vnode, stderr io.Writer) (string, map[string]error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		out  strings.Builder
		errs = map[string]error{}
	)
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			err := run(ctx, []string{"--server", a.URL, "--token-file", a.TokenFile, "load", "--nodes", n.hrn, "--image", "base", "--disk", filepath.Join(n.dir, "disk0"),
				"--poll", "50ms", "--boot-timeout", "30s", "--timeout", "2m"}, &b, stderr)
			mu.Lock()
			defer mu.Unlock()
			out.WriteString(b.String())
			if err != nil {
				errs[n.hrn] = err
			}
		}()
	}
	wg.Wait()
	return out.String(), errs
}

// checkAfterKill: no boot link is left (the nodes had none before the
// load), cfg_dir agrees with the database, the stored image is whole and
// nothing else is in the image directory.
func checkAfterKill(ctx context.Context, t *testing.T, a *apptest.Appliance, data []byte) {
	t.Helper()
	if links := linksAgree(ctx, t, a); len(links) > 0 {
		t.Errorf("boot links left: %v", links)
	}
	if !bytes.Equal(storedImage(ctx, t, a, "base"), data) {
		t.Errorf("the stored image base changed")
	}
	if left := leftovers(t, filepath.Join(a.Dir, "state", "images")); len(left) > 0 {
		t.Errorf("left in the image directory: %q", left)
	}
}
