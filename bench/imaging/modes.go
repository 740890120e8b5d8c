package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/bench/internal/diskdata"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/rc/proto"
)

// loadFunc loads the rig's image onto the disk of every one of nodes and
// returns the wall time from the load's start (the first command issued,
// the sender started) to the last node done, its data written and
// fsynced. The caller makes the disks fresh before (unless the mode is a
// delta), reads the appliance's bytes sent around the call and checks
// every disk after: a loadFunc does neither.
type loadFunc func(ctx context.Context, r *rig, nodes []*node) (time.Duration, error)

// mode is one way of putting the image onto the nodes' disks. Adding one
// (chunked unicast, its delta reload, multicast) is a line in modes and,
// for a new stored format, its entry in imageFormats.
type mode struct {
	name string
	// format is the stored image the mode loads (a key of rig.images):
	// the denominator of its bytes ratio.
	format string
	// appliance: the appliance's own full load (what the targets call
	// "one node's load").
	appliance bool
	// delta: the mode loads onto the disks as the mode before left them
	// (a reload of an unchanged disk); others get fresh, sparse disks.
	delta bool
	// oneNode: the mode runs at N=1 only.
	oneNode bool
	load    loadFunc
}

// Mode names the targets refer to.
const (
	modeUnicast        = "unicast"         // today's: one HTTP stream per node
	modeChunked        = "chunked unicast" // issue 16's chunked format, each node by HTTP
	modeChunkedReload  = "chunked reload"  // the same again onto the loaded disks
	modeMulticast      = "multicast"       // issue 16's multicast session
	modeUdpcast        = "udpcast"
	modeCurl           = "curl|zstd|dd"
	formatZstd         = "zstd"
	formatChunked      = "chunked"
	udpcastPortbase    = 9000
	udpcastRendezvous  = "239.255.216.1"
	udpcastDataAddress = "239.255.216.2"
)

// imageFormats are the forms the image is stored in on the appliance, each
// under a name of its own (netbootd would pick one format of a name). The
// chunked format (internal/chunkimg's Writer, NAME.nbi) joins here.
var imageFormats = []struct {
	format, name, ext string
	// store writes the raw disk at raw as the appliance stores it, to dst.
	store func(raw, dst string) (int64, error)
}{
	{formatZstd, imageName, ".zst", func(raw, dst string) (int64, error) { return diskdata.Compress(raw, dst, "zstd") }},
	{formatChunked, imageName + "-chunked", ".nbi", storeChunked},
}

// storeChunked writes the raw disk at raw as a chunked image (nbctl disk
// put's conversion) to dst.
func storeChunked(raw, dst string) (int64, error) {
	in, err := os.Open(raw)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return 0, err
	}
	defer out.Close()
	if _, _, err := chunkimg.Copy(out, in, chunkimg.DefaultChunkSize); err != nil {
		return 0, fmt.Errorf("chunked image %s: %w", dst, err)
	}
	fi, err := out.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), out.Close()
}

// modes are measured in this order at each N: the chunked reload right
// after the chunked load whose disks it reloads.
func modes() []mode {
	return []mode{
		{name: modeUnicast, format: formatZstd, appliance: true, load: rcLoad(formatZstd, false)},
		{name: modeChunked, format: formatChunked, appliance: true, load: rcLoad(formatChunked, false)},
		{name: modeChunkedReload, format: formatChunked, delta: true, load: rcLoad(formatChunked, false)},
		{name: modeMulticast, format: formatChunked, appliance: true, load: rcLoad(formatChunked, true)},
		{name: modeUdpcast, format: formatZstd, load: udpcast},
		{name: modeCurl, format: formatZstd, oneNode: true, load: curlZstdDD},
	}
}

// rcLoad sends every node's RC a LOAD_IMAGE of the image stored in format
// at once (asking for one multicast session, or each by HTTP) and waits
// for all: the time is the appliance's record of the last one's end.
func rcLoad(format string, multicast bool) loadFunc {
	return func(ctx context.Context, r *rig, nodes []*node) (time.Duration, error) {
		img := r.images[format]
		start := time.Now()
		ids := make([]int64, len(nodes))
		for i, n := range nodes {
			st, err := r.am.SendCommand(ctx, n.hrn, proto.CommandRequest{Type: proto.LoadImage, Image: img.name, Disk: n.disk, Multicast: multicast})
			if err != nil {
				return 0, fmt.Errorf("LOAD_IMAGE %s: %w", n.hrn, err)
			}
			ids[i] = st.ID
		}
		var last time.Time
		for i, id := range ids {
			st, err := r.am.WaitCommand(ctx, id, 50*time.Millisecond, nil)
			if err != nil {
				return 0, fmt.Errorf("LOAD_IMAGE %s: %w", nodes[i].hrn, err)
			}
			if st.State != proto.StateDone || st.FinishedAt == nil {
				return 0, fmt.Errorf("LOAD_IMAGE %s: %s: %s\n--- its RC:\n%s", nodes[i].hrn, st.State, st.Error, nodes[i].rc.out)
			}
			if st.FinishedAt.After(last) {
				last = *st.FinishedAt
			}
		}
		// The appliance's clock is this machine's: its record of the end
		// is not delayed by the polling here.
		return last.Sub(start), nil
	}
}

// udpcast sends the stored image with udp-sender (paced to -udp-rate) from
// the appliance's namespace to a udp-receiver on every node, which pipes
// it through zstd -dc onto the disk, as udpcast images a disk; each node is
// done once its receiver has exited and its disk is fsynced.
func udpcast(ctx context.Context, r *rig, nodes []*node) (time.Duration, error) {
	img := r.images[formatZstd]
	rdv := []string{"--interface", iface, "--portbase", strconv.Itoa(udpcastPortbase), "--mcast-rdv-address", udpcastRendezvous, "--nokbd"}
	receivers := make([]*proc, len(nodes))
	defer func() {
		for _, p := range receivers {
			if p != nil {
				p.stop()
			}
		}
	}()
	for i, n := range nodes {
		p, err := start(n.ns.Command(ctx, "udp-receiver", append([]string{"--file", n.disk, "--pipe", "zstd -dcq",
			"--start-timeout", "60", "--receive-timeout", "30"}, rdv...)...))
		if err != nil {
			return 0, err
		}
		receivers[i] = p
	}
	// The receivers are up and waiting, as RCs polling are.
	time.Sleep(500 * time.Millisecond)
	start0 := time.Now()
	sender, err := start(r.app.Command(ctx, "udp-sender", append([]string{"--file", img.path, "--min-receivers", strconv.Itoa(len(nodes)),
		"--max-bitrate", r.o.udpRate, "--mcast-data-address", udpcastDataAddress}, rdv...)...))
	if err != nil {
		return 0, err
	}
	defer sender.stop()
	ends := make([]time.Time, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, p := range receivers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case err := <-p.done:
				if err != nil {
					errs[i] = fmt.Errorf("udp-receiver on %s: %w\n%s", nodes[i].hrn, err, p.out)
					return
				}
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			receivers[i] = nil
			errs[i] = fsync(nodes[i].disk)
			ends[i] = time.Now()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("%w\n--- udp-sender:\n%s", err, sender.out)
	}
	var last time.Time
	for _, e := range ends {
		if e.After(last) {
			last = e
		}
	}
	return last.Sub(start0), nil
}

// curlZstdDD is the pipeline an operator would use by hand on a node:
// curl from the appliance's API (the admin's token), zstd -dc, dd onto the
// disk with an fsync at the end, as bench/rc's zstd|dd.
func curlZstdDD(ctx context.Context, r *rig, nodes []*node) (time.Duration, error) {
	n := nodes[0]
	// The token goes in a header file, not on a command line.
	hdr := filepath.Join(r.dir, "curl-header")
	if err := os.WriteFile(hdr, []byte("Authorization: Bearer "+r.a.Token+"\n"), 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(hdr)
	script := fmt.Sprintf("curl -sSf -H @%s %s | zstd -dcq | dd of=%s bs=4M conv=notrunc,fsync status=none",
		hdr, r.a.URL+proto.DiskImagePath(r.images[formatZstd].name), n.disk)
	start := time.Now()
	out, err := n.ns.Command(ctx, "bash", "-o", "pipefail", "-c", script).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %w: %s", script, err, out)
	}
	return time.Since(start), nil
}

func fsync(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
