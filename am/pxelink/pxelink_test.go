package pxelink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/store"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type fixture struct {
	m     *Manager
	st    *store.Store
	dir   string
	clock *clock
}

func newFixture(t *testing.T, images ...string) *fixture {
	t.Helper()
	st, err := store.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newFixtureWith(t, st, images...)
}

func newFixtureWith(t *testing.T, st Store, images ...string) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pxelinux.cfg")
	c := &clock{t: time.Unix(1_000_000, 0)}
	m, err := New(Config{Dir: dir, Lifetime: 300 * time.Second, Now: c.now}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range images {
		if err := os.WriteFile(filepath.Join(dir, img), []byte("DEFAULT x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{m: m, dir: dir, clock: c}
	f.st, _ = st.(*store.Store)
	return f
}

// sameInode reports whether the two links are one inode (hard links of
// one template), not followed.
func sameInode(a, b string) bool {
	fa, errA := os.Lstat(a)
	fb, errB := os.Lstat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// listing describes the directory: name -> link target, or "file".
func (f *fixture) listing(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == templateDir {
			continue
		}
		if target, err := os.Readlink(filepath.Join(f.dir, e.Name())); err == nil {
			out[e.Name()] = target
		} else {
			out[e.Name()] = "file"
		}
	}
	return out
}

func TestHexName(t *testing.T) {
	for ip, want := range map[string]string{"10.18.1.2": "0A120102", "10.0.0.1": "0A000001", "192.168.255.10": "C0A8FF0A"} {
		if got, err := HexName(ip); err != nil || got != want {
			t.Errorf("HexName(%s) = %s, %v; want %s", ip, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0", "::1", "10.0.0.256"} {
		if _, err := HexName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("HexName(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSetAllOrNothing(t *testing.T) {
	tests := []struct {
		name    string
		targets []Target
		wantErr error
	}{
		{"unknown image in the middle", []Target{{"a", "10.0.0.1", "img"}, {"b", "10.0.0.2", "nope"}, {"c", "10.0.0.3", "img"}}, ErrNoImage},
		{"bad address at the end", []Target{{"a", "10.0.0.1", "img"}, {"b", "10.0.0.256", "img"}}, ErrInvalid},
		{"image name escaping cfg_dir", []Target{{"a", "10.0.0.1", "../../etc/passwd"}}, ErrInvalid},
		{"image named like a node link", []Target{{"a", "10.0.0.1", "0A000002"}}, ErrInvalid},
		{"directory as image", []Target{{"a", "10.0.0.1", "sub"}}, ErrNoImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, "img")
			if err := os.Mkdir(filepath.Join(f.dir, "sub"), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, err := f.m.Set(ctx, []Target{{"a", "10.0.0.1", "img"}}, 0); err != nil {
				t.Fatal(err)
			}
			before := f.listing(t)
			if _, err := f.m.Set(ctx, tt.targets, 0); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Set err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(before, f.listing(t)); diff != "" {
				t.Errorf("directory changed by a rejected set (-before +after):\n%s", diff)
			}
			links, _ := f.m.List(ctx)
			if len(links) != 1 || links[0].Refs != 1 {
				t.Errorf("database changed by a rejected set: %+v", links)
			}
		})
	}
}

func TestSetClearExpire(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "orbit-2.0.0", "other")
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "orbit-2.0.0"}, {"n2", "10.18.1.3", "other"}}, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"orbit-2.0.0": "file", "other": "file", "0A120102": "./orbit-2.0.0", "0A120103": "./other"}
	if diff := cmp.Diff(want, f.listing(t)); diff != "" {
		t.Fatalf("after set (-want +got):\n%s", diff)
	}
	// Links of one image share the template's inode: no inode is made per node.
	if _, err := f.m.Set(ctx, []Target{{"n3", "10.18.1.4", "other"}}, 0); err != nil {
		t.Fatal(err)
	}
	if !sameInode(filepath.Join(f.dir, "0A120103"), filepath.Join(f.dir, "0A120104")) {
		t.Errorf("links to one image are not hard links of one symlink")
	}
	if err := f.m.Clear(ctx, []Target{{HRN: "n3", IP: "10.18.1.4"}}); err != nil {
		t.Fatal(err)
	}
	// A second set with a longer lifetime keeps n1 alive past the first.
	f.clock.advance(100 * time.Second)
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "other"}}, 600*time.Second); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(250 * time.Second) // t=350: n2's only reference and n1's first are gone
	if err := f.m.expire(ctx); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"orbit-2.0.0": "file", "other": "file", "0A120102": "./other"}
	if diff := cmp.Diff(want, f.listing(t)); diff != "" {
		t.Fatalf("after the first expiry (-want +got):\n%s", diff)
	}
	if err := f.m.Clear(ctx, []Target{{HRN: "n1", IP: "10.18.1.2"}}); err != nil {
		t.Fatal(err)
	}
	delete(want, "0A120102")
	if diff := cmp.Diff(want, f.listing(t)); diff != "" {
		t.Fatalf("after clear (-want +got):\n%s", diff)
	}
	if links, _ := f.m.List(ctx); len(links) != 0 {
		t.Fatalf("links after clear: %+v", links)
	}
}

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "img", "old")
	if _, err := f.m.Set(ctx, []Target{{"keep", "10.0.0.1", "img"}, {"lost", "10.0.0.2", "img"}, {"wrong", "10.0.0.3", "img"}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Set(ctx, []Target{{"expired", "10.0.0.4", "img"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// What a crash, or a hand, may leave behind.
	os.Remove(filepath.Join(f.dir, "0A000002"))
	os.Remove(filepath.Join(f.dir, "0A000003"))
	for name, target := range map[string]string{
		"0A000003":                 "./old",
		"0A0000FF":                 "./img", // unknown to the database
		tmpPrefix + "0A000009-abc": "./img", // half-made
	} {
		if err := os.Symlink(target, filepath.Join(f.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.dir, "0A0000FE"), []byte("operator"), 0o644); err != nil { // an operator's file
		t.Fatal(err)
	}
	f.clock.advance(60 * time.Second)

	if err := f.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"img": "file", "old": "file", "0A0000FE": "file",
		"0A000001": "./img", "0A000002": "./img", "0A000003": "./img"}
	if diff := cmp.Diff(want, f.listing(t)); diff != "" {
		t.Fatalf("after reconcile (-want +got):\n%s", diff)
	}
	var hrns []string
	links, _ := f.m.List(ctx)
	for _, l := range links {
		hrns = append(hrns, l.HRN)
	}
	sort.Strings(hrns)
	if diff := cmp.Diff([]string{"keep", "lost", "wrong"}, hrns); diff != "" {
		t.Errorf("links after reconcile (-want +got):\n%s", diff)
	}
}

// failingStore fails every write, to show that the directory is rolled back.
type failingStore struct{ Store }

func (failingStore) SetLinks(context.Context, []store.BootLink, time.Time, time.Duration) error {
	return errors.New("disk full")
}
func (failingStore) ClearLinks(context.Context, []string) error { return errors.New("disk full") }

func TestRollbackWhenDatabaseFails(t *testing.T) {
	ctx := context.Background()
	good := newFixture(t, "img", "new")
	st := good.st
	if _, err := good.m.Set(ctx, []Target{{"a", "10.0.0.1", "img"}}, 0); err != nil {
		t.Fatal(err)
	}
	before := good.listing(t)
	bad, err := New(Config{Dir: good.dir, Lifetime: time.Minute}, failingStore{st}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Set(ctx, []Target{{"a", "10.0.0.1", "new"}, {"b", "10.0.0.2", "new"}}, 0); err == nil {
		t.Fatal("Set succeeded on a failing store")
	}
	if diff := cmp.Diff(before, good.listing(t)); diff != "" {
		t.Errorf("failed set left the directory changed (-before +after):\n%s", diff)
	}
	if err := bad.Clear(ctx, []Target{{HRN: "a", IP: "10.0.0.1"}}); err == nil {
		t.Fatal("Clear succeeded on a failing store")
	}
	if diff := cmp.Diff(before, good.listing(t)); diff != "" {
		t.Errorf("failed clear left the directory changed (-before +after):\n%s", diff)
	}
}

func TestEnsureDefault(t *testing.T) {
	f := newFixture(t)
	if err := f.m.EnsureDefault(); err != nil {
		t.Fatal(err)
	}
	// A node with no link of its own boots its local disk.
	const want = "DEFAULT harddisk\nLABEL harddisk\n  LOCALBOOT 0\n"
	data, err := os.ReadFile(filepath.Join(f.dir, "default"))
	if err != nil || string(data) != want {
		t.Fatalf("default = %q, %v; want %q", data, err, want)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "default"), []byte("operator's own\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.m.EnsureDefault(); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(filepath.Join(f.dir, "default"))
	if string(data) != "operator's own\n" {
		t.Fatalf("operator's default overwritten: %q", data)
	}
	if diff := cmp.Diff(map[string]string{"default": "file"}, f.listing(t)); diff != "" {
		t.Errorf("leftovers (-want +got):\n%s", diff)
	}
}
