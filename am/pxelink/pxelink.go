// Package pxelink points pxelinux and GRUB at a node's boot image: it keeps
// <cfg_dir>/<IP in hex> symlinks, and grub/grub.cfg-<IP in hex> beside them,
// in step with the boot links recorded in the database, expires them as
// OMF's PXE AM did, and repairs both directories after a restart. The link
// is the one truth every loader boots from: pxelinux and GRUB read these
// files, and the iPXE and UEFI HTTP Boot paths ask Lookup.
package pxelink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/store"
)

// ErrNoImage is returned when the requested image has no file in cfg_dir.
var ErrNoImage = errors.New("no such PXE image")

// ErrInvalid is returned for a target that can never be linked (a bad image
// name or address).
var ErrInvalid = errors.New("invalid boot target")

// Store is what the manager needs of the database.
type Store interface {
	SetLinks(ctx context.Context, links []store.BootLink, now time.Time, lifetime time.Duration) error
	ClearLinks(ctx context.Context, hrns []string) error
	LinkNames(ctx context.Context, hrns []string) (map[string]string, error)
	Links(ctx context.Context, now time.Time) ([]store.BootLink, error)
	LinkByHex(ctx context.Context, hex string, now time.Time) (store.BootLink, error)
	ExpireLinks(ctx context.Context, now time.Time) ([]store.BootLink, error)
}

// Target is a node resolved from the inventory, and the image it should boot.
type Target struct {
	HRN   string
	IP    string
	Image string
}

// Config configures a Manager.
type Config struct {
	Dir string // absolute path of cfg_dir
	// GrubDir is the absolute path of tftp_root/grub, where the nodes'
	// grub.cfg-<HEX> links go beside the images' <image>.cfg templates;
	// "" keeps no GRUB links.
	GrubDir  string
	Lifetime time.Duration // default link lifetime
	Interval time.Duration // how often expiry runs; 1s if zero
	Now      func() time.Time
}

// Manager owns the links in Dir. One mutex orders every change, so the
// directory and the database change in the same order and a node ends in
// the state of the last call.
type Manager struct {
	cfg   Config
	store Store
	log   *slog.Logger
	mu    sync.Mutex
}

const tmpPrefix = ".netboot-tmp-"

// hexName matches the names pxelinux asks for by IPv4 address.
var hexName = regexp.MustCompile(`^[0-9A-F]{8}$`)

// New returns a Manager for cfg.Dir, creating it if needed.
func New(cfg Config, st Store, log *slog.Logger) (*Manager, error) {
	if cfg.Lifetime <= 0 {
		return nil, fmt.Errorf("pxelink: lifetime %v must be positive", cfg.Lifetime)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, d := range []string{cfg.Dir, cfg.GrubDir} {
		if d == "" {
			continue
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("pxelink: %w", err)
		}
	}
	return &Manager{cfg: cfg, store: st, log: log}, nil
}

// HexName is the file name pxelinux asks for: each octet of the IPv4
// address as two upper-case hex digits (10.18.1.2 -> 0A120102).
func HexName(ip string) (string, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("%w: %q is not an IPv4 address", ErrInvalid, ip)
	}
	b := a.As4()
	return strings.ToUpper(hex.EncodeToString(b[:])), nil
}

// CheckImage verifies that image names a regular file in cfg_dir.
func (m *Manager) CheckImage(image string) error {
	if imagename.CheckPXE(image) != nil {
		return fmt.Errorf("%w: image name %q", ErrInvalid, image)
	}
	fi, err := os.Lstat(filepath.Join(m.cfg.Dir, image))
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %q (no file %s in %s)", ErrNoImage, image, image, m.cfg.Dir)
	}
	return nil
}

// Set points every target's link at its image, all or nothing: if any
// target is invalid or any step fails, no link changes. lifetime 0 means
// the configured default.
func (m *Manager) Set(ctx context.Context, targets []Target, lifetime time.Duration) ([]store.BootLink, error) {
	if lifetime <= 0 {
		lifetime = m.cfg.Lifetime
	}
	links := make([]store.BootLink, 0, len(targets))
	checked := map[string]bool{}
	for _, t := range targets {
		if !checked[t.Image] {
			if err := m.CheckImage(t.Image); err != nil {
				return nil, err
			}
			checked[t.Image] = true
		}
		h, err := HexName(t.IP)
		if err != nil {
			return nil, fmt.Errorf("node %q: %w", t.HRN, err)
		}
		links = append(links, store.BootLink{HRN: t.HRN, ControlIP: t.IP, Hex: h, Image: t.Image})
	}

	// Once begun, a change is finished even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.cfg.Now()
	var undo undoLog
	for _, l := range links {
		if err := m.pointAll(&undo, l.Hex, l.Image); err != nil {
			undo.rollback(m.log)
			return nil, fmt.Errorf("pxelink: set %s: %w", l.HRN, err)
		}
	}
	if err := m.store.SetLinks(ctx, links, now, lifetime); err != nil {
		undo.rollback(m.log)
		return nil, fmt.Errorf("pxelink: %w", err)
	}
	for i := range links {
		links[i].SetAt, links[i].ExpiresAt = now.UTC(), now.Add(lifetime).UTC()
	}
	m.log.Info("boot links set", "nodes", len(links), "lifetime", lifetime)
	return links, nil
}

// Clear removes the targets' links at once, whatever their references.
func (m *Manager) Clear(ctx context.Context, targets []Target) error {
	names := map[string][]string{} // hrn -> hex names to remove
	hrns := make([]string, 0, len(targets))
	for _, t := range targets {
		h, err := HexName(t.IP)
		if err != nil {
			return fmt.Errorf("node %q: %w", t.HRN, err)
		}
		names[t.HRN] = []string{h}
		hrns = append(hrns, t.HRN)
	}

	// Once begun, a change is finished even if the caller goes away.
	ctx = context.WithoutCancel(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	recorded, err := m.store.LinkNames(ctx, hrns)
	if err != nil {
		return fmt.Errorf("pxelink: %w", err)
	}
	for hrn, h := range recorded { // the recorded name, should the IP have changed since
		if n := names[hrn]; n[0] != h {
			names[hrn] = append(n, h)
		}
	}
	var undo undoLog
	for _, hrn := range hrns {
		for _, h := range names[hrn] {
			if err := m.removeAll(&undo, h); err != nil {
				undo.rollback(m.log)
				return fmt.Errorf("pxelink: clear %s: %w", hrn, err)
			}
		}
	}
	if err := m.store.ClearLinks(ctx, hrns); err != nil {
		undo.rollback(m.log)
		return fmt.Errorf("pxelink: %w", err)
	}
	m.log.Info("boot links cleared", "nodes", len(hrns))
	return nil
}

// List returns every active link.
func (m *Manager) List(ctx context.Context) ([]store.BootLink, error) {
	return m.store.Links(ctx, m.cfg.Now())
}

// Run expires links until ctx is done. Reconcile first, before anything
// serves the directory.
func (m *Manager) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := m.expire(ctx); err != nil && ctx.Err() == nil {
				m.log.Error("expiring boot links", "err", err)
			}
		}
	}
}

func (m *Manager) expire(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expireLocked(ctx)
}

func (m *Manager) expireLocked(ctx context.Context) error {
	gone, err := m.store.ExpireLinks(ctx, m.cfg.Now())
	if err != nil {
		return fmt.Errorf("pxelink: expire: %w", err)
	}
	for _, l := range gone {
		var undo undoLog // an expired link is gone from the database: no way back
		if err := m.removeAll(&undo, l.Hex); err != nil {
			m.log.Error("removing expired boot link", "hrn", l.HRN, "hex", l.Hex, "err", err)
			continue
		}
		m.log.Info("boot link expired", "hrn", l.HRN, "hex", l.Hex, "image", l.Image)
	}
	return nil
}

// Reconcile makes the directory match the database, which is the truth
// after a crash: expired links and hex-named links the database does not
// know go, missing or wrong ones are made again, stale temporary files are
// removed. Regular files are never touched: they are the operator's.
func (m *Manager) Reconcile(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.expireLocked(ctx); err != nil {
		return err
	}
	links, err := m.store.Links(ctx, m.cfg.Now())
	if err != nil {
		return fmt.Errorf("pxelink: reconcile: %w", err)
	}
	want := map[string]string{}
	for _, l := range links {
		want[l.Hex] = "./" + l.Image
	}
	entries, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		return fmt.Errorf("pxelink: reconcile: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		isLink := e.Type()&fs.ModeSymlink != 0
		switch {
		case strings.HasPrefix(name, tmpPrefix):
		case isLink && hexName.MatchString(name) && want[name] == "":
		default:
			continue
		}
		if err := os.Remove(filepath.Join(m.cfg.Dir, name)); err != nil {
			return fmt.Errorf("pxelink: reconcile: %w", err)
		}
		m.log.Info("reconcile: removed stale entry", "name", name)
	}
	for _, l := range links {
		path := filepath.Join(m.cfg.Dir, l.Hex)
		if target, err := os.Readlink(path); err == nil && target == want[l.Hex] {
			continue
		}
		var u undoLog
		if err := u.point(m.cfg.Dir, l.Hex, l.Image); err != nil {
			return fmt.Errorf("pxelink: reconcile %s: %w", l.HRN, err)
		}
		m.log.Info("reconcile: restored boot link", "hrn", l.HRN, "hex", l.Hex, "image", l.Image)
	}
	return m.reconcileGrub(links)
}

// reconcileGrub does for GrubDir what Reconcile does for cfg_dir: a node
// has grub.cfg-<HEX> exactly while it has a link and its image has a GRUB
// template; stale temporary files go, regular files stay.
func (m *Manager) reconcileGrub(links []store.BootLink) error {
	if m.cfg.GrubDir == "" {
		return nil
	}
	want := map[string]string{}
	for _, l := range links {
		if m.hasGrub(l.Image) {
			want[grubName(l.Hex)] = "./" + grubTemplate(l.Image)
		}
	}
	entries, err := os.ReadDir(m.cfg.GrubDir)
	if err != nil {
		return fmt.Errorf("pxelink: reconcile grub: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		isLink := e.Type()&fs.ModeSymlink != 0
		switch {
		case strings.HasPrefix(name, tmpPrefix):
		case isLink && grubHexName.MatchString(name) && want[name] == "":
		default:
			continue
		}
		if err := os.Remove(filepath.Join(m.cfg.GrubDir, name)); err != nil {
			return fmt.Errorf("pxelink: reconcile grub: %w", err)
		}
		m.log.Info("reconcile: removed stale GRUB entry", "name", name)
	}
	for _, l := range links {
		name := grubName(l.Hex)
		if want[name] == "" {
			continue
		}
		if target, err := os.Readlink(filepath.Join(m.cfg.GrubDir, name)); err == nil && target == want[name] {
			continue
		}
		var u undoLog
		if err := u.point(m.cfg.GrubDir, name, grubTemplate(l.Image)); err != nil {
			return fmt.Errorf("pxelink: reconcile grub %s: %w", l.HRN, err)
		}
		m.log.Info("reconcile: restored GRUB link", "hrn", l.HRN, "name", name, "image", l.Image)
	}
	return nil
}

// grubHexName matches the per-node names GRUB looks up by IPv4 address.
var grubHexName = regexp.MustCompile(`^grub\.cfg-[0-9A-F]{8}$`)

// grubName is a node's GRUB config, by its hex IP.
func grubName(hex string) string { return "grub.cfg-" + hex }

// grubTemplate is an image's GRUB config in GrubDir, written by nbctl
// image build (imagename.GrubConfig, without the directory).
func grubTemplate(image string) string {
	return strings.TrimPrefix(imagename.GrubConfig(image), imagename.GrubDir+"/")
}

// hasGrub reports whether image has a GRUB config to link nodes to. An
// image built before GRUB configs existed has none: its nodes get no GRUB
// link (GRUB then leaves netboot), never a dangling one.
func (m *Manager) hasGrub(image string) bool {
	if m.cfg.GrubDir == "" {
		return false
	}
	fi, err := os.Lstat(filepath.Join(m.cfg.GrubDir, grubTemplate(image)))
	return err == nil && fi.Mode().IsRegular()
}

// pointAll points a node's loader files at image: pxelinux's, and GRUB's
// where the image has a GRUB config (else any old GRUB link goes, so that
// GRUB never boots another image than pxelinux would).
func (m *Manager) pointAll(undo *undoLog, hex, image string) error {
	if err := undo.point(m.cfg.Dir, hex, image); err != nil {
		return err
	}
	switch {
	case m.cfg.GrubDir == "":
		return nil
	case m.hasGrub(image):
		return undo.point(m.cfg.GrubDir, grubName(hex), grubTemplate(image))
	default:
		return undo.remove(m.cfg.GrubDir, grubName(hex))
	}
}

// removeAll removes a node's loader files.
func (m *Manager) removeAll(undo *undoLog, hex string) error {
	if err := undo.remove(m.cfg.Dir, hex); err != nil {
		return err
	}
	if m.cfg.GrubDir == "" {
		return nil
	}
	return undo.remove(m.cfg.GrubDir, grubName(hex))
}

// Lookup returns the active link of the node with this hex IP; ok is
// false when it has none. The boot paths without a file of their own (the
// iPXE script, UEFI HTTP Boot) ask it.
func (m *Manager) Lookup(ctx context.Context, hex string) (l store.BootLink, ok bool, err error) {
	l, err = m.store.LinkByHex(ctx, hex, m.cfg.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.BootLink{}, false, nil
	case err != nil:
		return store.BootLink{}, false, fmt.Errorf("pxelink: %w", err)
	}
	return l, true, nil
}

// GrubRootConfig is our grub/grub.cfg, the one file Debian's network GRUB
// reads by itself. Its first pass calls normal again, which makes GRUB
// look for grub.cfg-01-<mac>, then grub.cfg-<HEX> (the node's link), then
// this file once more; that second pass, and any node without a link,
// exits GRUB. Nodes without a link rarely get here (dhcpd sends UEFI nodes
// without one a boot file that is not there, so that their firmware goes
// on to the disk): Debian's GRUB 2.06 exits with EFI_SUCCESS, on which
// OVMF opens its menu rather than trying the next entry.
// The exported variable is what tells the passes apart.
const GrubRootConfig = grubMarker + `
# A node with a boot link has grub.cfg-<IP in hex> beside this file; GRUB
# finds it through the lookup "normal" does. Without one: back to the firmware.
if [ -z "$netboot_pass" ]; then
  set netboot_pass=1
  export netboot_pass
  normal
fi
exit
`

// grubMarker starts every grub.cfg netbootd writes: a file that starts
// with it is ours to rewrite; any other is the operator's.
const grubMarker = "# netbootd: this file is written by netbootd at start; remove this line to keep your own."

// EnsureGrubRoot writes GrubDir/grub.cfg if it is absent or ours (so an
// upgrade rewrites it); an operator's file is left alone.
func (m *Manager) EnsureGrubRoot() error {
	if m.cfg.GrubDir == "" {
		return nil
	}
	path := filepath.Join(m.cfg.GrubDir, "grub.cfg")
	old, err := os.ReadFile(path)
	switch {
	case err == nil && string(old) == GrubRootConfig:
		return nil
	case err == nil && !strings.HasPrefix(string(old), grubMarker):
		m.log.Info("grub/grub.cfg is the operator's: GRUB nodes boot what it says, not their links", "path", path)
		return nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("pxelink: grub.cfg: %w", err)
	}
	if err := atomicfile.WriteFile(path, []byte(GrubRootConfig), 0o644); err != nil {
		return fmt.Errorf("pxelink: grub.cfg: %w", err)
	}
	return nil
}

// DefaultConfig is the seed's pxelinux.cfg/default: boot the local disk.
const DefaultConfig = "DEFAULT harddisk\nLABEL harddisk\n  LOCALBOOT 0\n"

// EnsureDefault writes cfg_dir/default if there is none. An operator's file
// is never overwritten.
func (m *Manager) EnsureDefault() error {
	path := filepath.Join(m.cfg.Dir, "default")
	if _, err := os.Lstat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pxelink: default: %w", err)
	}
	tmp := filepath.Join(m.cfg.Dir, tmpPrefix+"default-"+randomSuffix())
	if err := os.WriteFile(tmp, []byte(DefaultConfig), 0o644); err != nil {
		return fmt.Errorf("pxelink: default: %w", err)
	}
	// Link, not rename: it fails if an operator's file appeared meanwhile.
	err := os.Link(tmp, path)
	os.Remove(tmp)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("pxelink: default: %w", err)
	}
	return nil
}

// undoLog remembers what each change replaced, so a failed batch can put
// the directory back as it was.
type undoLog []func() error

// point atomically makes dir/name a symlink to ./image: a reader sees the
// old link or the new one, never none. A new name is made in place, since
// making a link is atomic; an existing one is replaced by rename(2).
func (u *undoLog) point(dir, name, image string) error {
	path, target := filepath.Join(dir, name), "./"+image
	old, oldErr := os.Readlink(path)
	if oldErr == nil && old == target {
		return nil
	}
	if errors.Is(oldErr, fs.ErrNotExist) {
		err := makeLink(dir, image, path)
		if err == nil {
			*u = append(*u, func() error { return os.Remove(path) })
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		old, oldErr = os.Readlink(path) // made meanwhile by someone else
	}
	tmp := filepath.Join(dir, tmpPrefix+name+"-"+randomSuffix())
	if err := makeLink(dir, image, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	*u = append(*u, func() error {
		if oldErr != nil {
			return os.Remove(path)
		}
		var v undoLog
		return v.point(dir, name, strings.TrimPrefix(old, "./"))
	})
	return nil
}

// templateDir holds one symlink per image (to ./<image>) that node links
// are hard links of. A hard link makes no new inode, and on ext4 without a
// journal a new inode costs a scan past every recently deleted one: clear
// 400 links and set them again, and symlink(2) takes 10 times as long.
// Resolved from cfg_dir, where the node links are, the target is right.
const templateDir = ".netboot-links"

// makeLink makes path a symlink to ./image: a hard link of the image's
// template symlink, or a new symlink where that cannot be had.
func makeLink(dir, image, path string) error {
	target := "./" + image
	tmpl := filepath.Join(dir, templateDir, image)
	if got, err := os.Readlink(tmpl); err != nil || got != target {
		if err := makeTemplate(dir, target, tmpl); err != nil {
			return os.Symlink(target, path)
		}
	}
	if err := os.Link(tmpl, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return err
		}
		return os.Symlink(target, path)
	}
	return nil
}

// makeTemplate (re)makes an image's template symlink atomically.
func makeTemplate(dir, target, tmpl string) error {
	if err := os.MkdirAll(filepath.Join(dir, templateDir), 0o755); err != nil {
		return err
	}
	tmp := tmpl + "." + randomSuffix()
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, tmpl); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// remove deletes dir/name; a missing one is fine. Like OMF, it removes
// whatever holds a node's name, but only a symlink can be put back.
func (u *undoLog) remove(dir, name string) error {
	path := filepath.Join(dir, name)
	old, linkErr := os.Readlink(path)
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if linkErr == nil {
		*u = append(*u, func() error {
			var v undoLog
			return v.point(dir, name, strings.TrimPrefix(old, "./"))
		})
	}
	return nil
}

func (u undoLog) rollback(log *slog.Logger) {
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil {
			log.Error("rolling back boot link change", "err", err)
		}
	}
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
