package metrics

import (
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bootTracker follows each node's boot through its timeline events and
// observes the time from the boot's start to each phase, once per boot.
type bootTracker struct {
	hist *prometheus.HistogramVec

	mu    sync.Mutex
	boots map[string]*boot // by node; bounded by maxBoots
}

// boot is one node's boot in progress.
type boot struct {
	start time.Time
	seen  map[string]bool // the phases observed
}

const (
	// staleBoot: a boot that has not enrolled after this long is over
	// (failed, or the node boots its local disk); the node's next
	// DISCOVER starts a new one.
	staleBoot = time.Hour
	// maxBoots bounds the map: past it, stale boots are swept, then the
	// event is not tracked (a grid has hundreds of nodes, not this many).
	maxBoots = 100000
)

func newBootTracker(hist *prometheus.HistogramVec) *bootTracker {
	return &bootTracker{hist: hist, boots: map[string]*boot{}}
}

// event moves node's boot on by one timeline event.
func (t *bootTracker) event(node string, at time.Time, source, what string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.boots[node]
	switch {
	case source == "power" && (what == "on" || what == "reset" || what == "reboot"):
		t.start(node, at)
	case source == "power" && strings.HasPrefix(what, "off"):
		delete(t.boots, node)
	case source == "dhcp" && what == "DHCPOFFER":
		// The answer to a DISCOVER, recorded at the DISCOVER's time. A
		// boot's later DISCOVERs (iPXE's, the kernel's) go on with it.
		if b == nil || b.seen[PhaseEnrolled] || at.Sub(b.start) > staleBoot {
			t.start(node, at)
		}
	case source == "dhcp" && what == "DHCPACK":
		t.phase(b, PhaseDHCPAck, at)
	case (source == "tftp" || source == "http") && isKernel(what):
		t.phase(b, PhaseKernel, at)
	case source == "rc" && what == "enrolled":
		t.phase(b, PhaseEnrolled, at)
	}
}

func (t *bootTracker) start(node string, at time.Time) {
	if _, ok := t.boots[node]; !ok && len(t.boots) >= maxBoots {
		for n, b := range t.boots {
			if at.Sub(b.start) > staleBoot || b.seen[PhaseEnrolled] {
				delete(t.boots, n)
			}
		}
		if len(t.boots) >= maxBoots {
			return
		}
	}
	t.boots[node] = &boot{start: at, seen: map[string]bool{}}
}

// phase observes phase of b, the first time only; nothing for an event
// with no boot started before it.
func (t *bootTracker) phase(b *boot, phase string, at time.Time) {
	if b == nil || b.seen[phase] || at.Before(b.start) {
		return
	}
	b.seen[phase] = true
	t.hist.WithLabelValues(phase).Observe(at.Sub(b.start).Seconds())
}

// kernelPrefixes name the files that are kernels, by their base name:
// the inventory's images (linux-<image>), distributions' vmlinuz and
// vmlinux, x86's bzImage and arm64's Image.
var kernelPrefixes = []string{"linux", "vmlinuz", "vmlinux", "bzimage", "kernel"}

// isKernel says whether a boot file is a kernel, by its name: the boot
// loaders, configs and initramfs images are not.
func isKernel(file string) bool {
	base := strings.ToLower(path.Base(file))
	if base == "image" || strings.HasPrefix(base, "image-") {
		return true
	}
	if strings.Contains(base, "initr") || strings.HasSuffix(base, ".cfg") || strings.HasSuffix(base, ".efi") {
		return false
	}
	for _, p := range kernelPrefixes {
		if strings.HasPrefix(base, p) {
			return true
		}
	}
	return false
}
