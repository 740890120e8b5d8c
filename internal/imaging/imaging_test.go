package imaging

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/rc/proto"
)

// fakeAM is an appliance with nodes that "boot" at each reset: the
// node's script says which RAM image its RC enrolls from at the Nth reset
// ("" for an RC that never comes up).
type fakeAM struct {
	mu      sync.Mutex
	nodes   map[string]apiv1.Node
	images  []string // PXE images
	disks   []string // stored disk images
	boots   map[string][]string
	fail    map[string]string // command type -> node that fails it
	stall   map[string]string // command type -> node whose RC takes it and never ends it; "link": SetBoot
	off     map[string]bool   // nodes switched off: their BMC refuses a reset
	links   map[string]string // hrn -> image
	expires map[string]time.Time
	events  map[string][]apiv1.Event
	noPXE   map[string]bool // nodes that boot without reading a PXE configuration
	// multicast: what each node's LOAD_IMAGE or SAVE_IMAGE said of multicast
	multicast map[string]bool
	nextEvt   int64
	rc        map[string]proto.RCStatus
	cmds      map[int64]proto.CommandStatus
	nextCmd   int64
	nextEnr   int64
	resets    map[string]int
	log       []string          // what was done to which node, in order
	after     func(step string) // called with each log line as it is written, f.mu held
	cleared   []string
	setCalls  int
	loaded    *proto.Progress // what LOAD_IMAGE reports, if not the default
}

func newFake(nodes ...string) *fakeAM {
	f := &fakeAM{
		nodes: map[string]apiv1.Node{}, images: []string{"orbit-2.0.0"}, disks: []string{"baseline"},
		boots: map[string][]string{}, fail: map[string]string{}, stall: map[string]string{}, off: map[string]bool{}, links: map[string]string{},
		rc: map[string]proto.RCStatus{}, cmds: map[int64]proto.CommandStatus{}, resets: map[string]int{},
		expires: map[string]time.Time{}, events: map[string][]apiv1.Event{}, noPXE: map[string]bool{},
		multicast: map[string]bool{},
	}
	for _, hrn := range nodes {
		f.nodes[hrn] = apiv1.Node{HRN: hrn, Hostname: strings.Split(hrn, ".")[0], Disk: "/dev/sda", Power: "qemu:/run/" + hrn + ".qmp", PXEImage: "orbit-2.0.0"}
		f.boots[hrn] = []string{"orbit-2.0.0"}
		f.rc[hrn] = proto.RCStatus{HRN: hrn}
	}
	return f
}

func (f *fakeAM) note(format string, args ...any) {
	step := fmt.Sprintf(format, args...)
	f.log = append(f.log, step)
	if f.after != nil {
		f.after(step)
	}
}

// Node finds a node as the appliance does: by HRN, or by a unique host
// name. Every other call of the fake takes the HRN only.
func (f *fakeAM) Node(_ context.Context, name string) (apiv1.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[name]; ok {
		return n, nil
	}
	var found []apiv1.Node
	for _, n := range f.nodes {
		if n.Hostname == name {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return apiv1.Node{}, fmt.Errorf("no node %s (HTTP 404)", name)
	}
	return found[0], nil
}

func (f *fakeAM) Images(context.Context) ([]apiv1.Image, error) {
	var out []apiv1.Image
	for _, i := range f.images {
		out = append(out, apiv1.Image{Name: i})
	}
	return out, nil
}

func (f *fakeAM) DiskImages(context.Context) ([]proto.DiskImage, error) {
	var out []proto.DiskImage
	for _, d := range f.disks {
		out = append(out, proto.DiskImage{Name: d})
	}
	return out, nil
}

func (f *fakeAM) SetBoot(ctx context.Context, hrn, image string, lifetime time.Duration) (apiv1.BootLink, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall["link"] == hrn { // an appliance that does not answer
		f.mu.Unlock()
		<-ctx.Done()
		f.mu.Lock()
		return apiv1.BootLink{}, ctx.Err()
	}
	f.setCalls++
	if image == "" {
		image = f.nodes[hrn].PXEImage
	}
	now := time.Now()
	f.links[hrn], f.expires[hrn] = image, now.Add(lifetime)
	f.note("%s link %s", hrn, image)
	return apiv1.BootLink{HRN: hrn, Image: image, SetAt: now, ExpiresAt: now.Add(lifetime)}, nil
}

func (f *fakeAM) Boot(ctx context.Context) ([]apiv1.BootLink, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []apiv1.BootLink
	for hrn, img := range f.links {
		out = append(out, apiv1.BootLink{HRN: hrn, Image: img, ExpiresAt: f.expires[hrn]})
	}
	return out, nil
}

func (f *fakeAM) Events(ctx context.Context, hrn string, after int64) ([]apiv1.Event, error) {
	evs, err := lookup(ctx, f, f.events, hrn)
	return slices.DeleteFunc(slices.Clone(evs), func(e apiv1.Event) bool { return e.ID <= after }), err
}

// pxeBoot is a node starting to boot: pxelinux reads its configuration,
// unless the node boots without it. f.mu held.
func (f *fakeAM) pxeBoot(hrn string) {
	if f.noPXE[hrn] {
		return
	}
	f.nextEvt++
	f.events[hrn] = append(f.events[hrn], apiv1.Event{ID: f.nextEvt, HRN: hrn, Source: "tftp", What: "pxelinux.cfg/default"})
}

func (f *fakeAM) ClearBoot(_ context.Context, hrn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.links, hrn)
	delete(f.expires, hrn)
	f.cleared = append(f.cleared, hrn)
	f.note("%s clear", hrn)
	return nil
}

func (f *fakeAM) Power(ctx context.Context, hrn, action string) (string, error) {
	if err := ctx.Err(); err != nil { // as an HTTP client would
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note("%s power %s", hrn, action)
	switch {
	case action == "status" && f.off[hrn]:
		return "off", nil
	case action == "status":
		return "on", nil
	case action == "reset" && f.off[hrn]:
		return "", errors.New("ipmitool: Command not supported in present state (HTTP 502)")
	}
	delete(f.off, hrn)
	f.pxeBoot(hrn)
	boot := f.resets[hrn]
	f.resets[hrn]++
	st := proto.RCStatus{HRN: hrn} // the reset ends the old RC
	if script := f.boots[hrn]; boot < len(script) && script[boot] != "" && f.links[hrn] != "" {
		f.nextEnr++
		st = proto.RCStatus{HRN: hrn, Enrolled: true, Online: true, Enrollment: f.nextEnr, Image: script[boot]}
	}
	f.rc[hrn] = st
	return "on", nil
}

// lookup answers a read from one of the fake's tables; a done context
// fails it, as an HTTP client would.
func lookup[K comparable, V any](ctx context.Context, f *fakeAM, table map[K]V, key K) (V, error) {
	if err := ctx.Err(); err != nil {
		var zero V
		return zero, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return table[key], nil
}

func (f *fakeAM) RCStatus(ctx context.Context, hrn string) (proto.RCStatus, error) {
	return lookup(ctx, f, f.rc, hrn)
}

func (f *fakeAM) SendCommand(ctx context.Context, hrn string, req proto.CommandRequest) (proto.CommandStatus, error) {
	if err := ctx.Err(); err != nil {
		return proto.CommandStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rc := f.rc[hrn]
	if !rc.Enrolled {
		return proto.CommandStatus{}, fmt.Errorf("node %s has no enrolled RC (HTTP 409)", hrn)
	}
	f.nextCmd++
	st := proto.CommandStatus{ID: f.nextCmd, HRN: hrn, Type: req.Type, Image: req.Image, Disk: req.Disk, State: proto.StateDone}
	if st.Disk == "" {
		st.Disk = f.nodes[hrn].Disk
	}
	switch req.Type {
	case proto.Enroll:
		st.Reply = proto.ReplyEnrolled
		if rc.Image != req.Image {
			st.Reply = proto.ReplyWrongImage
		}
	case proto.LoadImage, proto.SaveImage:
		st.Progress = proto.Progress{Done: 1000, Total: 1000, Written: 4000}
		if f.loaded != nil && req.Type == proto.LoadImage {
			st.Progress = *f.loaded
		}
		st.SHA256 = "abc"
	}
	if f.fail[req.Type] == hrn {
		st.State, st.Reply, st.Error = proto.StateFailed, proto.ReplyError, "disk on fire"
	}
	if f.stall[req.Type] == hrn {
		st.State, st.Reply, st.Progress, st.SHA256 = proto.StateRunning, "", proto.Progress{Done: 10, Total: 1000}, ""
	}
	if req.Type == proto.Reboot && st.State == proto.StateDone {
		f.pxeBoot(hrn)
	}
	f.note("%s %s %s", hrn, req.Type, req.Image)
	if req.Type == proto.LoadImage || req.Type == proto.SaveImage {
		f.multicast[hrn] = req.Multicast
	}
	f.cmds[st.ID] = st
	return st, nil
}

func (f *fakeAM) Command(ctx context.Context, id int64) (proto.CommandStatus, error) {
	return lookup(ctx, f, f.cmds, id)
}

// nodeLog is what was done to one node, in order.
func (f *fakeAM) nodeLog(hrn string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, l := range f.log {
		if rest, ok := strings.CutPrefix(l, hrn+" "); ok {
			out = append(out, rest)
		}
	}
	return out
}

var (
	loaded  = []string{"link orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "clear", "LOAD_IMAGE baseline", "REBOOT "}
	aNode   = "node1-1.vtb"
	another = "node1-2.vtb"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeAM, j *Job)
		// want per node: its log and its outcome ("" for done, else a
		// piece of the error).
		want map[string][]string
		errs map[string]string
		disk string // the disk the nodes that got through report; "" is their inventory's
	}{
		{
			name:  "two nodes loaded",
			setup: func(*fakeAM, *Job) {},
			want:  map[string][]string{aNode: loaded, another: loaded},
		},
		{
			// The fake takes host names in Node only: every later call
			// must name the node by the HRN that Node found.
			name:  "nodes named by host name",
			setup: func(_ *fakeAM, j *Job) { j.Nodes = []string{"node1-1", "node1-2"} },
			want:  map[string][]string{aNode: loaded, another: loaded},
		},
		{
			name: "WRONG_IMAGE: reset again",
			setup: func(f *fakeAM, _ *Job) {
				f.boots[aNode] = []string{"orbit-1.0.0", "orbit-2.0.0"}
			},
			want: map[string][]string{
				aNode:   {"link orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "clear", "LOAD_IMAGE baseline", "REBOOT "},
				another: loaded,
			},
		},
		{
			name: "WRONG_IMAGE every time: given up after the attempts",
			setup: func(f *fakeAM, j *Job) {
				j.Attempts = 2
				f.boots[aNode] = []string{"orbit-1.0.0", "orbit-1.0.0", "orbit-1.0.0"}
			},
			want: map[string][]string{
				aNode:   {"link orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "clear"},
				another: loaded,
			},
			errs: map[string]string{aNode: "WRONG_IMAGE"},
		},
		{
			name: "an RC that never comes up times out, the other node goes on",
			setup: func(f *fakeAM, j *Job) {
				j.BootTimeout, j.Attempts = 30*time.Millisecond, 2
				f.boots[aNode] = []string{"", ""}
			},
			want: map[string][]string{
				aNode:   {"link orbit-2.0.0", "power reset", "power reset", "clear"},
				another: loaded,
			},
			errs: map[string]string{aNode: "no RC enrolled in time: none within 30ms of the reset"},
		},
		{
			name:  "a failed load fails that node only",
			setup: func(f *fakeAM, _ *Job) { f.fail[proto.LoadImage] = another },
			want: map[string][]string{
				aNode:   loaded,
				another: loaded[:5],
			},
			errs: map[string]string{another: "LOAD_IMAGE baseline failed: disk on fire"},
		},
		{
			name: "a refused REBOOT: reset through the power driver",
			setup: func(f *fakeAM, _ *Job) {
				f.fail[proto.Reboot] = aNode
			},
			want: map[string][]string{
				aNode:   append(loaded[:6:6], "power reset"),
				another: loaded,
			},
		},
		{
			name:  "a node that is off is switched on",
			setup: func(f *fakeAM, _ *Job) { f.off[aNode] = true },
			want: map[string][]string{
				aNode:   {"link orbit-2.0.0", "power reset", "power status", "power on", "ENROLL orbit-2.0.0", "clear", "LOAD_IMAGE baseline", "REBOOT "},
				another: loaded,
			},
		},
		{
			name:  "no reboot",
			setup: func(_ *fakeAM, j *Job) { j.NoReboot = true },
			want:  map[string][]string{aNode: loaded[:5], another: loaded[:5]},
		},
		{
			// Were REBOOT sent, it would hang until the RC was given up on
			// and the node reset through its power driver.
			name: "no reboot, with an RC that never answers REBOOT",
			setup: func(f *fakeAM, j *Job) {
				j.NoReboot = true
				f.stall[proto.Reboot] = aNode
			},
			want: map[string][]string{aNode: loaded[:5], another: loaded[:5]},
		},
		{
			name:  "another disk than the inventory's",
			setup: func(_ *fakeAM, j *Job) { j.Disk = "/dev/sdb" },
			want:  map[string][]string{aNode: loaded, another: loaded},
			disk:  "/dev/sdb",
		},
		{
			name: "another RAM image",
			setup: func(f *fakeAM, j *Job) {
				j.PXEImage = "orbit-3.0.0"
				f.images = append(f.images, "orbit-3.0.0")
				f.boots[aNode] = []string{"orbit-3.0.0"}
				f.boots[another] = []string{"orbit-3.0.0"}
			},
			want: map[string][]string{
				aNode:   {"link orbit-3.0.0", "power reset", "ENROLL orbit-3.0.0", "clear", "LOAD_IMAGE baseline", "REBOOT "},
				another: {"link orbit-3.0.0", "power reset", "ENROLL orbit-3.0.0", "clear", "LOAD_IMAGE baseline", "REBOOT "},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode, another)
			job := Job{Op: Load, Nodes: []string{aNode, another}, Image: "baseline", Poll: time.Millisecond}
			tc.setup(f, &job)
			var updates []Update
			job.Progress = func(u Update) { updates = append(updates, u) }
			res, err := Run(context.Background(), f, job)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 || res[0].Node != aNode || res[1].Node != another {
				t.Fatalf("results %+v: want one per node, in order", res)
			}
			for _, r := range res {
				if diff := cmp.Diff(tc.want[r.Node], f.nodeLog(r.Node)); diff != "" {
					t.Errorf("%s: what was done (-want +got):\n%s", r.Node, diff)
				}
				want := tc.errs[r.Node]
				switch {
				case want == "" && r.Err != nil:
					t.Errorf("%s failed: %v", r.Node, r.Err)
				case want == "" && r.Phase != PhaseDone:
					t.Errorf("%s: phase %s, want done", r.Node, r.Phase)
				case want != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), want)):
					t.Errorf("%s: error %v, want one saying %q", r.Node, r.Err, want)
				case want != "" && !strings.HasPrefix(r.Err.Error(), r.Node+": "):
					t.Errorf("%s: error %q does not start with the node's name", r.Node, r.Err)
				}
				disk := tc.disk
				if disk == "" {
					disk = "/dev/sda"
				}
				if want == "" && (r.Bytes != 4000 || r.Stored != 1000 || r.Disk != disk || r.SHA256 != "abc") {
					t.Errorf("%s: result %+v: want 4000 bytes written from 1000 stored onto %s", r.Node, r, disk)
				}
			}
			if len(f.links) != 0 {
				t.Errorf("links left set: %v", f.links)
			}
			if last := updates[len(updates)-1]; last.Phase != PhaseDone && last.Phase != PhaseFailed {
				t.Errorf("last update %+v: want a node's end", last)
			}
		})
	}
}

func TestPreflight(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeAM, j *Job)
		want  []string
	}{
		{"unknown disk image", func(_ *fakeAM, j *Job) { j.Image = "nosuch" }, []string{`disk image "nosuch" does not exist`}},
		{"unknown node", func(_ *fakeAM, j *Job) { j.Nodes = append(j.Nodes, "node9-9.vtb") }, []string{"node node9-9.vtb: no node"}},
		{"no power driver", func(f *fakeAM, _ *Job) {
			n := f.nodes[another]
			n.Power = "none"
			f.nodes[another] = n
		}, []string{"node " + another + " has no power driver"}},
		{"unknown PXE image", func(_ *fakeAM, j *Job) { j.PXEImage = "orbit-9" }, []string{`PXE image "orbit-9" is not in the inventory`}},
		{"a node twice", func(_ *fakeAM, j *Job) { j.Nodes = append(j.Nodes, aNode) }, []string{"named twice"}},
		{"a node by HRN and by host name", func(_ *fakeAM, j *Job) { j.Nodes = append(j.Nodes, "node1-1") },
			[]string{"nodes " + aNode + " and node1-1 are both " + aNode}},
		{"every problem at once", func(_ *fakeAM, j *Job) { j.Image = "nosuch"; j.Nodes = append(j.Nodes, "node9-9.vtb") },
			[]string{`disk image "nosuch"`, "node9-9.vtb"}},
		{"save onto an existing image", func(_ *fakeAM, j *Job) { j.Op = Save; j.Nodes = j.Nodes[:1] }, []string{`disk image "baseline" exists already`}},
		{"save from two nodes", func(_ *fakeAM, j *Job) { j.Op = Save; j.Image = "new" }, []string{"save takes one node, not 2"}},
		{"save under a bad name", func(_ *fakeAM, j *Job) { j.Op = Save; j.Nodes = j.Nodes[:1]; j.Image = "../x" }, []string{`disk image name "../x"`}},
		{"no nodes", func(_ *fakeAM, j *Job) { j.Nodes = nil }, []string{"no nodes"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode, another)
			job := Job{Op: Load, Nodes: []string{aNode, another}, Image: "baseline", Poll: time.Millisecond}
			tc.setup(f, &job)
			res, err := Run(context.Background(), f, job)
			if !errors.Is(err, ErrPreflight) || res != nil {
				t.Fatalf("Run: %v, %v; want a preflight error", res, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(f.log) != 0 {
				t.Errorf("nodes were touched: %v", f.log)
			}
		})
	}
}

// TestInterrupted: a job stopped during the transfer (Ctrl-C) clears the
// links of the nodes that had not got that far.
func TestInterrupted(t *testing.T) {
	f := newFake(aNode, another)
	f.boots[another] = []string{""}  // still netbooting when the job stops
	f.stall[proto.LoadImage] = aNode // still loading then
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stopped once one node is loading and the other was reset: the nodes
	// go at their own pace, so either may get there first.
	loading, reset := false, false
	f.after = func(step string) {
		loading = loading || step == aNode+" LOAD_IMAGE baseline"
		reset = reset || step == another+" power reset"
		if loading && reset {
			cancel()
		}
	}
	res, err := Run(ctx, f, Job{Op: Load, Nodes: []string{aNode, another}, Image: "baseline", Poll: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Err == nil || !strings.Contains(r.Err.Error(), "interrupted while") {
			t.Errorf("%s: %v; want interrupted", r.Node, r.Err)
		}
	}
	if len(f.links) != 0 {
		t.Errorf("links left set: %v", f.links)
	}
	if diff := cmp.Diff([]string{"link orbit-2.0.0", "power reset", "clear"}, f.nodeLog(another)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", another, diff)
	}
}

func TestSave(t *testing.T) {
	tests := []struct {
		name  string
		image string
		job   func(j *Job)
		disk  string // the disk the SAVE_IMAGE must read
	}{
		{"a new image from the inventory's disk", "mine", func(*Job) {}, "/dev/sda"},
		{"another disk", "mine", func(j *Job) { j.Disk = "/dev/sdb" }, "/dev/sdb"},
		// Without Replace, TestPreflight's "save onto an existing image".
		{"over an existing image, with replace", "baseline", func(j *Job) { j.Replace = true }, "/dev/sda"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode)
			job := Job{Op: Save, Nodes: []string{aNode}, Image: tc.image, Poll: time.Millisecond}
			tc.job(&job)
			res, err := Run(context.Background(), f, job)
			if err != nil || len(res) != 1 || res[0].Err != nil {
				t.Fatalf("%+v %v", res, err)
			}
			want := []string{"link orbit-2.0.0", "power reset", "ENROLL orbit-2.0.0", "clear", "SAVE_IMAGE " + tc.image, "REBOOT "}
			if diff := cmp.Diff(want, f.nodeLog(aNode)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			// Saving reads the disk and stores it compressed.
			if r := res[0]; r.Bytes != 1000 || r.Stored != 4000 || r.Disk != tc.disk {
				t.Errorf("result %+v: want 1000 bytes read from %s, 4000 stored", r, tc.disk)
			}
		})
	}
}

// TestChunkedLoadResult: the result of a chunked image's load counts the
// disk's bytes written and skipped, and the image's fetched, from the RC's
// progress (Done counts the disk there, not the image).
func TestChunkedLoadResult(t *testing.T) {
	f := newFake(aNode)
	f.loaded = &proto.Progress{Done: 4000, Total: 4000, Written: 1000, Skipped: 3000, Fetched: 300}
	res, err := Run(context.Background(), f, Job{Op: Load, Nodes: []string{aNode}, Image: "baseline", Poll: time.Millisecond})
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("%+v %v", res, err)
	}
	if r := res[0]; r.Bytes != 1000 || r.Skipped != 3000 || r.Fetched != 300 || r.Stored != 300 {
		t.Errorf("result %+v: want 1000 bytes written, 3000 skipped, 300 fetched and stored", r)
	}
}

// TestMulticastAsked: a load onto several nodes asks the appliance for one
// multicast session; a load onto one node, or a save, does not.
func TestMulticastAsked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    Op
		image string
		nodes []string
		want  bool
	}{
		{"load onto two nodes", Load, "baseline", []string{aNode, another}, true},
		{"load onto one node", Load, "baseline", []string{aNode}, false},
		{"save", Save, "mine", []string{aNode}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode, another)
			res, err := Run(context.Background(), f, Job{Op: tc.op, Nodes: tc.nodes, Image: tc.image, Poll: time.Millisecond})
			if err != nil || len(res) != len(tc.nodes) {
				t.Fatalf("%+v %v", res, err)
			}
			for _, hrn := range tc.nodes {
				if got, ok := f.multicast[hrn]; !ok || got != tc.want {
					t.Errorf("%s: multicast %v (sent: %v), want %v", hrn, got, ok, tc.want)
				}
			}
		})
	}
}

// runBounded runs job in ctx, which nothing but the test ends: with a job
// timeout (of a second or two) not applied, Run can go on for ever, so a
// Run still going 20 s in is canceled, and fails t.
func runBounded(ctx context.Context, t *testing.T, f *fakeAM, job Job) ([]Result, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type ran struct {
		res []Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := Run(ctx, f, job)
		done <- ran{res, err}
	}()
	select {
	case got := <-done:
		return got.res, got.err
	case <-time.After(20 * time.Second):
		cancel()
		<-done
		t.Fatalf("Run still going 20 s into a job of %v", job.Timeout)
		return nil, nil
	}
}

// TestTimeoutWhileLinking: a job whose timeout runs out before every
// link is set says so, and touched no node.
func TestTimeoutWhileLinking(t *testing.T) {
	f := newFake(aNode, another)
	f.stall["link"] = another
	res, err := runBounded(t.Context(), t, f, Job{Op: Load, Nodes: []string{aNode, another}, Image: "baseline", Timeout: time.Second, Poll: time.Millisecond})
	if res != nil || !errors.Is(err, ErrPreflight) || !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "the job's 1s ran out: ") {
		t.Fatalf("Run: %v, %v; want the job's 1s named", res, err)
	}
	if diff := cmp.Diff([]string{"link orbit-2.0.0", "clear"}, f.nodeLog(aNode)); diff != "" {
		t.Errorf("%s (-want +got):\n%s", aNode, diff)
	}
}

// TestTimeout: Job.Timeout (nbctl's --timeout) ends a node stuck at any
// step, with an error that names the timeout, and the links are cleared.
func TestTimeout(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fakeAM)
	}{
		{"an RC that never comes up", func(f *fakeAM) { f.boots[aNode] = []string{""} }},
		{"a LOAD_IMAGE that never ends", func(f *fakeAM) { f.stall[proto.LoadImage] = aNode }},
		{"a REBOOT that never ends", func(f *fakeAM) { f.stall[proto.Reboot] = aNode }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode)
			tc.setup(f)
			// The boot timeout and the reboot wait are far longer than the
			// job's: only the job's timeout can end this in time.
			job := Job{Op: Load, Nodes: []string{aNode}, Image: "baseline", Timeout: 2 * time.Second, BootTimeout: time.Hour, Poll: time.Millisecond}
			res, err := runBounded(t.Context(), t, f, job)
			if err != nil || len(res) != 1 {
				t.Fatalf("Run: %+v, %v", res, err)
			}
			err = res[0].Err
			if err == nil || !strings.Contains(err.Error(), aNode+": the job's 2s ran out while ") || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %v: want the job's 2s timeout named", err)
			}
			if res[0].Phase == PhaseDone {
				t.Errorf("phase %s after a timeout", res[0].Phase)
			}
			if len(f.links) != 0 {
				t.Errorf("links left set: %v", f.links)
			}
		})
	}
}

// TestRestoreLinks: a boot link a node had before the job (an EC's) is
// back as it was once the job is through with the node, but never before
// the node's reboot into its new disk has read its PXE configuration; where
// it cannot be put back, the result says so and how to.
func TestRestoreLinks(t *testing.T) {
	restored := "link orbit-exp"
	tests := []struct {
		name  string
		setup func(f *fakeAM, j *Job, cancel func())
		prior time.Duration // the earlier link's lifetime left when the job starts
		log   []string      // what was done to aNode
		image string        // aNode's link at the end, "" for none
		note  string        // in aNode's Restore
		err   string        // Run's error
	}{
		{name: "after the reboot, once the node read its PXE configuration", prior: time.Hour,
			log: append(loaded[:6:6], restored), image: "orbit-exp", note: "boot link to orbit-exp until .*: restored$"},
		{name: "no reboot: at once", prior: time.Hour, setup: func(_ *fakeAM, j *Job, _ func()) { j.NoReboot = true },
			log: append(loaded[:5:5], restored), image: "orbit-exp", note: "boot link .*: restored$"},
		{name: "a failed load: at once", prior: time.Hour, setup: func(f *fakeAM, _ *Job, _ func()) { f.fail[proto.LoadImage] = aNode },
			log: append(loaded[:5:5], restored), image: "orbit-exp", note: "boot link .*: restored$"},
		{name: "a node that boots without reading its PXE configuration: not restored", prior: time.Hour,
			setup: func(f *fakeAM, j *Job, _ func()) { f.noPXE[aNode] = true; j.BootTimeout = 50 * time.Millisecond },
			log:   loaded, note: "boot link to orbit-exp until .*: NOT restored: the node read no boot configuration .* within 50ms of its reboot.*; to restore it: nbctl boot set --image orbit-exp --lifetime DURATION " + aNode},
		{name: "interrupted before the node read its PXE configuration: not restored", prior: time.Hour,
			setup: func(f *fakeAM, _ *Job, cancel func()) {
				f.noPXE[aNode] = true
				f.after = func(step string) {
					if step == aNode+" REBOOT " {
						cancel()
					}
				}
			},
			log: loaded, note: "boot link .*: NOT restored: the job ended before the node read its PXE configuration after its reboot"},
		{name: "expired meanwhile", prior: 500 * time.Millisecond, log: loaded, note: "boot link to orbit-exp until .*: not restored: it expired meanwhile$"},
		{name: "a link set during the job stays", prior: time.Hour,
			setup: func(f *fakeAM, _ *Job, _ func()) {
				f.after = func(step string) {
					if step == aNode+" LOAD_IMAGE baseline" {
						f.links[aNode], f.expires[aNode] = "orbit-new", time.Now().Add(time.Minute)
					}
				}
			},
			log: loaded, image: "orbit-new", note: "boot link to orbit-exp until .*: NOT restored: the node has a link set since \\(boot link to orbit-new until .*\\), which stays"},
		{name: "setting the links failed: the link replaced is back", prior: time.Hour,
			setup: func(f *fakeAM, j *Job, _ func()) { f.stall["link"] = another; j.Timeout = time.Second },
			log:   []string{"link orbit-2.0.0", "clear", restored}, image: "orbit-exp", err: "the job's 1s ran out"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(aNode, another)
			until := time.Now().Add(tc.prior)
			f.links[aNode], f.expires[aNode] = "orbit-exp", until
			job := Job{Op: Load, Nodes: []string{aNode, another}, Image: "baseline", Poll: time.Millisecond}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tc.setup != nil {
				tc.setup(f, &job, cancel)
			}
			res, err := runBounded(ctx, t, f, job)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Run: %v, want %q", err, tc.err)
				}
			} else if err != nil || len(res) != 2 {
				t.Fatalf("Run: %+v, %v", res, err)
			}
			if diff := cmp.Diff(tc.log, f.nodeLog(aNode)); diff != "" {
				t.Errorf("what was done to %s (-want +got):\n%s", aNode, diff)
			}
			f.mu.Lock()
			img, exp, other := f.links[aNode], f.expires[aNode], f.links[another]
			f.mu.Unlock()
			if img != tc.image || other != "" {
				t.Errorf("links at the end: %s %q, %s %q; want %q and none", aNode, img, another, other, tc.image)
			}
			// Put back with the lifetime it had left: it ends when it would have.
			if tc.image == "orbit-exp" && (exp.Before(until.Add(-5*time.Second)) || exp.After(until.Add(time.Second))) {
				t.Errorf("restored link expires at %v, want %v", exp, until)
			}
			if res == nil {
				return
			}
			r := res[0]
			if r.Before == nil || r.Before.Image != "orbit-exp" || r.Restored != (tc.image == "orbit-exp") || !regexp.MustCompile("^"+tc.note).MatchString(r.Restore) {
				t.Errorf("result: before %+v, restored %v, %q; want %q", r.Before, r.Restored, r.Restore, tc.note)
			}
			if res[1].Before != nil || res[1].Restore != "" {
				t.Errorf("%s had no link, yet: %+v", another, res[1])
			}
		})
	}
}

// After a reboot into the written disk, the link comes back once the
// node's boot loader has read what the link decides, whichever loader.
func TestReadBootConfig(t *testing.T) {
	for _, tc := range []struct {
		source, what string
		want         bool
	}{
		{"tftp", "pxelinux.cfg/0A120101", true},
		{"tftp", "pxelinux.cfg/default", true},
		{"http", "pxelinux.cfg/0A120101", true},
		{"tftp", "grub/grub.cfg", true},
		{"tftp", "grub/grub.cfg-0A120101", true},
		{"http", "grub/grub.cfg-0A120101", true},
		{"http", "IPXE", true},
		{"tftp", "IPXE", false},
		{"tftp", "pxelinux.0", false},
		{"tftp", "linux-orbit-pxe-6.1.0-57-amd64", false},
		{"tftp", "grub/orbit-2.0.0.cfg", false},
		{"http", "shimx64.efi", false},
		{"dhcp", "pxelinux.cfg/0A120101", false},
		{"rc", "enrolled", false},
	} {
		if got := readBootConfig(apiv1.Event{Source: tc.source, What: tc.what}); got != tc.want {
			t.Errorf("readBootConfig(%s %s) = %v, want %v", tc.source, tc.what, got, tc.want)
		}
	}
}
