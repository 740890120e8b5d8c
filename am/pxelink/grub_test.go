package pxelink

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/store"
)

// grubFixture is a fixture whose manager also keeps GRUB links, in a
// grub/ beside cfg_dir; images with GRUB configs get one in grub/.
type grubFixture struct {
	*fixture
	grub string
}

func newGrubFixture(t *testing.T, st Store, pxeOnly []string, images ...string) *grubFixture {
	t.Helper()
	root := t.TempDir()
	dir, grub := filepath.Join(root, "pxelinux.cfg"), filepath.Join(root, "grub")
	c := &clock{t: time.Unix(1_000_000, 0)}
	m, err := New(Config{Dir: dir, GrubDir: grub, Lifetime: 300 * time.Second, Now: c.now}, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range append(append([]string{}, images...), pxeOnly...) {
		if err := os.WriteFile(filepath.Join(dir, img), []byte("DEFAULT x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, img := range images {
		if err := os.WriteFile(filepath.Join(grub, img+".cfg"), []byte("menuentry "+img+" {}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{m: m, dir: dir, clock: c}
	f.st, _ = st.(*store.Store)
	return &grubFixture{fixture: f, grub: grub}
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// grubListing describes grub/ as listing does cfg_dir.
func (f *grubFixture) grubListing(t *testing.T) map[string]string {
	t.Helper()
	g := &fixture{dir: f.grub}
	return g.listing(t)
}

// agree checks the invariant: every active link has its pxelinux file
// and, where its image has a GRUB config, its GRUB file, each readable to
// the image's content (nothing dangling); no other node file, no temporary
// file in either directory.
func (f *grubFixture) agree(t *testing.T) {
	t.Helper()
	links, err := f.m.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want, wantGrub := map[string]bool{}, map[string]bool{}
	for _, l := range links {
		want[l.Hex] = true
		if _, err := os.ReadFile(filepath.Join(f.dir, l.Hex)); err != nil {
			t.Errorf("%s: pxelinux link: %v", l.HRN, err)
		}
		if _, err := os.Stat(filepath.Join(f.grub, l.Image+".cfg")); err != nil {
			continue
		}
		wantGrub["grub.cfg-"+l.Hex] = true
		got, err := os.ReadFile(filepath.Join(f.grub, "grub.cfg-"+l.Hex))
		if err != nil || string(got) != "menuentry "+l.Image+" {}\n" {
			t.Errorf("%s: GRUB link reads %q, %v; want image %s", l.HRN, got, err, l.Image)
		}
	}
	for name, target := range f.listing(t) {
		if strings.HasPrefix(name, tmpPrefix) || (target != "file" && hexName.MatchString(name) && !want[name]) {
			t.Errorf("cfg_dir: stray %s -> %s", name, target)
		}
	}
	for name, target := range f.grubListing(t) {
		if strings.HasPrefix(name, tmpPrefix) || (strings.HasPrefix(name, "grub.cfg-") && target != "file" && !wantGrub[name]) {
			t.Errorf("grub: stray %s -> %s", name, target)
		}
	}
}

func TestGrubLinks(t *testing.T) {
	ctx := context.Background()
	f := newGrubFixture(t, openStore(t), []string{"legacy"}, "orbit-2.0.0", "other")
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "orbit-2.0.0"}, {"n2", "10.18.1.3", "legacy"}}, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"orbit-2.0.0.cfg": "file", "other.cfg": "file", "grub.cfg-0A120102": "./orbit-2.0.0.cfg"}
	if diff := cmp.Diff(want, f.grubListing(t)); diff != "" {
		t.Fatalf("after set (-want +got); an image without a GRUB config gets no GRUB link:\n%s", diff)
	}
	f.agree(t)
	// Same inode per image, as for pxelinux.
	if _, err := f.m.Set(ctx, []Target{{"n3", "10.18.1.4", "orbit-2.0.0"}}, 0); err != nil {
		t.Fatal(err)
	}
	if !sameInode(filepath.Join(f.grub, "grub.cfg-0A120102"), filepath.Join(f.grub, "grub.cfg-0A120104")) {
		t.Errorf("GRUB links to one image are not hard links of one template")
	}
	// Re-pointing follows pxelinux: to another image, then to one without
	// a GRUB config (the GRUB link goes: GRUB must not boot the old image).
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "other"}}, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.Readlink(filepath.Join(f.grub, "grub.cfg-0A120102")); got != "./other.cfg" {
		t.Errorf("re-pointed GRUB link -> %q", got)
	}
	f.agree(t)
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "legacy"}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.grub, "grub.cfg-0A120102")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GRUB link kept for an image without a GRUB config: %v", err)
	}
	f.agree(t)
	if err := f.m.Clear(ctx, []Target{{HRN: "n3", IP: "10.18.1.4"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.grub, "grub.cfg-0A120104")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("GRUB link kept after clear: %v", err)
	}
	f.agree(t)
	// Expiry removes both files.
	if _, err := f.m.Set(ctx, []Target{{"n4", "10.18.1.5", "orbit-2.0.0"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(400 * time.Second)
	if err := f.m.expire(ctx); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"orbit-2.0.0.cfg": "file", "other.cfg": "file"}
	if diff := cmp.Diff(want, f.grubListing(t)); diff != "" {
		t.Fatalf("after expiry (-want +got):\n%s", diff)
	}
	f.agree(t)
}

func TestGrubReconcile(t *testing.T) {
	ctx := context.Background()
	f := newGrubFixture(t, openStore(t), []string{"legacy"}, "img", "old")
	if _, err := f.m.Set(ctx, []Target{{"keep", "10.0.0.1", "img"}, {"lost", "10.0.0.2", "img"}, {"wrong", "10.0.0.3", "img"}, {"plain", "10.0.0.5", "legacy"}}, 0); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(f.grub, "grub.cfg-0A000002"))
	os.Remove(filepath.Join(f.grub, "grub.cfg-0A000003"))
	for name, target := range map[string]string{
		"grub.cfg-0A000003":                 "./old.cfg",
		"grub.cfg-0A0000FF":                 "./img.cfg",    // unknown to the database
		"grub.cfg-0A000005":                 "./legacy.cfg", // dangling: legacy has no GRUB config
		tmpPrefix + "grub.cfg-0A000009-abc": "./img.cfg",
	} {
		if err := os.Symlink(target, filepath.Join(f.grub, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.grub, "grub.cfg-0A0000FE"), []byte("operator"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"img.cfg": "file", "old.cfg": "file", "grub.cfg-0A0000FE": "file",
		"grub.cfg-0A000001": "./img.cfg", "grub.cfg-0A000002": "./img.cfg", "grub.cfg-0A000003": "./img.cfg"}
	if diff := cmp.Diff(want, f.grubListing(t)); diff != "" {
		t.Fatalf("after reconcile (-want +got):\n%s", diff)
	}
	f.agree(t)
}

func TestGrubRollbackWhenDatabaseFails(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	good := newGrubFixture(t, st, []string{"legacy"}, "img", "new")
	if _, err := good.m.Set(ctx, []Target{{"a", "10.0.0.1", "img"}, {"c", "10.0.0.3", "img"}}, 0); err != nil {
		t.Fatal(err)
	}
	before, beforeGrub := good.listing(t), good.grubListing(t)
	bad, err := New(Config{Dir: good.dir, GrubDir: good.grub, Lifetime: time.Minute}, failingStore{st}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error {
			_, err := bad.Set(ctx, []Target{{"a", "10.0.0.1", "new"}, {"b", "10.0.0.2", "new"}, {"c", "10.0.0.3", "legacy"}}, 0)
			return err
		},
		func() error { return bad.Clear(ctx, []Target{{HRN: "a", IP: "10.0.0.1"}, {HRN: "c", IP: "10.0.0.3"}}) },
	} {
		if err := op(); err == nil {
			t.Fatal("a change succeeded on a failing store")
		}
		if diff := cmp.Diff(before, good.listing(t)); diff != "" {
			t.Errorf("cfg_dir changed (-before +after):\n%s", diff)
		}
		if diff := cmp.Diff(beforeGrub, good.grubListing(t)); diff != "" {
			t.Errorf("grub changed (-before +after):\n%s", diff)
		}
		good.agree(t)
	}
}

func TestEnsureGrubRoot(t *testing.T) {
	f := newGrubFixture(t, openStore(t), nil)
	path := filepath.Join(f.grub, "grub.cfg")
	read := func() string { b, _ := os.ReadFile(path); return string(b) }
	if err := f.m.EnsureGrubRoot(); err != nil || read() != GrubRootConfig {
		t.Fatalf("absent: %v, wrote %q", err, read())
	}
	// An older one of ours is rewritten; an operator's is kept.
	if err := os.WriteFile(path, []byte(grubMarker+"\nexit\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.m.EnsureGrubRoot(); err != nil || read() != GrubRootConfig {
		t.Fatalf("ours, older: %v, now %q", err, read())
	}
	if err := os.WriteFile(path, []byte("set default=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.m.EnsureGrubRoot(); err != nil || read() != "set default=0\n" {
		t.Fatalf("operator's: %v, now %q", err, read())
	}
	for name := range f.grubListing(t) {
		if strings.HasPrefix(name, ".") && name != templateDir {
			t.Errorf("temporary file left: %s", name)
		}
	}
}

// TestLookup: the link the iPXE and HTTP Boot paths follow.
func TestLookup(t *testing.T) {
	ctx := context.Background()
	f := newGrubFixture(t, openStore(t), nil, "img")
	if _, ok, err := f.m.Lookup(ctx, "0A000001"); ok || err != nil {
		t.Fatalf("no link: ok %v, %v", ok, err)
	}
	if _, err := f.m.Set(ctx, []Target{{"a", "10.0.0.1", "img"}}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if l, ok, err := f.m.Lookup(ctx, "0A000001"); !ok || err != nil || l.Image != "img" || l.HRN != "a" {
		t.Fatalf("linked: %+v, %v, %v", l, ok, err)
	}
	f.clock.advance(11 * time.Second) // expired, not yet removed
	if _, ok, err := f.m.Lookup(ctx, "0A000001"); ok || err != nil {
		t.Fatalf("expired: ok %v, %v", ok, err)
	}
}
