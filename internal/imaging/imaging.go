// Package imaging is the Experiment Controller's imaging flow, OMF's
// `omf load` and `omf save`, driven over the appliance's JSON API: point
// the nodes' PXE links at the orbit-pxe RAM image, reset them through
// their power drivers, wait until each one's RC enrolls from that image
// (resetting it again on WRONG_IMAGE), clear the links, have each RC write
// a stored disk image onto its disk (or store its disk as an image), and
// reboot the nodes into their disks.
//
// Everything that can be checked is checked before any node is touched:
// the nodes, their power drivers, the images. After that the nodes go
// through the flow independently: one that fails or times out is reported
// in its Result and the others go on. Every link the flow set is cleared
// on every way out, a cancelled context (Ctrl-C) included, and a link a
// node had before the job (an EC's) is put back as it was (restore.go).
//
// It is orchestration, not a leaf helper: nbctl's load and save, kept out
// of package main so that its tests drive the flow against a fake API. It
// reaches the appliance only through the JSON API (internal/amclient and
// the API's wire types) and imports no service package (am, dhcpd, tftpd,
// rc except rc/proto).
package imaging

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/rc/proto"
)

// AM is what the flow needs of the appliance; *amclient.Client has it.
type AM interface {
	Node(ctx context.Context, hrn string) (apiv1.Node, error)
	Images(ctx context.Context) ([]apiv1.Image, error)
	DiskImages(ctx context.Context) ([]proto.DiskImage, error)
	SetBoot(ctx context.Context, hrn, image string, lifetime time.Duration) (apiv1.BootLink, error)
	ClearBoot(ctx context.Context, hrn string) error
	Boot(ctx context.Context) ([]apiv1.BootLink, error)
	Events(ctx context.Context, hrn string, after int64) ([]apiv1.Event, error)
	Power(ctx context.Context, hrn, action string) (string, error)
	RCStatus(ctx context.Context, hrn string) (proto.RCStatus, error)
	SendCommand(ctx context.Context, hrn string, req proto.CommandRequest) (proto.CommandStatus, error)
	Command(ctx context.Context, id int64) (proto.CommandStatus, error)
}

// Op is what is done to the nodes' disks.
type Op string

// The operations, as nbctl's subcommands name them.
const (
	Load Op = "load" // LOAD_IMAGE: a stored disk image onto each node's disk
	Save Op = "save" // SAVE_IMAGE: the node's disk into a stored disk image
)

// Defaults for zero Job fields.
const (
	DefaultTimeout     = 20 * time.Minute // OMF's load timeout was 1200 s
	DefaultBootTimeout = 5 * time.Minute
	DefaultAttempts    = 3
	DefaultPoll        = time.Second
	// rebootTimeout bounds the wait for an RC to take REBOOT before the
	// node is reset through its power driver instead.
	rebootTimeout = time.Minute
	// cleanupTimeout bounds clearing the links on the way out, which runs
	// even when the job's context is done.
	cleanupTimeout = restartWait
)

// Job says what to do.
type Job struct {
	Op    Op
	Nodes []string // HRNs, or host names unique in the AM's lookup
	// Image is, for Load, the stored disk image to write; for Save, the
	// name to store the disk as.
	Image string
	// PXEImage is the RAM image the nodes netboot; "" means each node's
	// inventory image (the AM's default if it has none).
	PXEImage string
	// Disk is the block device; "" means each node's inventory disk.
	Disk string
	// Replace lets Save overwrite a stored image of the same name.
	Replace bool
	// NoReboot leaves the nodes running the RAM image at the end instead of
	// rebooting them into their disks.
	NoReboot bool
	// Timeout bounds the whole job, BootTimeout one reset's wait for the
	// RC, Attempts the resets per node; Poll is how often the appliance is
	// asked how a node is doing. Zero means the default.
	Timeout     time.Duration
	BootTimeout time.Duration
	Attempts    int
	Poll        time.Duration
	// Progress, if not nil, is told of every step of every node, one call
	// at a time.
	Progress func(Update)
}

// Phase is how far a node got.
type Phase string

// The phases in the order a node passes them (loading or saving, as the
// Op says); done and failed end it.
const (
	PhaseNetboot  Phase = "netbooting" // reset, waiting for its RC to enroll
	PhaseEnrolled Phase = "enrolled"   // its RC runs the right image
	PhaseLoad     Phase = "loading"    // LOAD_IMAGE running
	PhaseSave     Phase = "saving"     // SAVE_IMAGE running
	PhaseReboot   Phase = "rebooting"  // into its disk
	PhaseDone     Phase = "done"
	PhaseFailed   Phase = "failed"
)

// Update is one step of one node.
type Update struct {
	Node     string
	Phase    Phase
	Progress proto.Progress // while loading or saving
	Note     string         // why a node was reset again, why it failed
}

// Result is how one node's part of the job ended.
type Result struct {
	Node   string
	Err    error // nil if the node went all the way
	Phase  Phase // the last phase it reached (where it failed, if it did)
	Resets int
	// Took runs from the node's first reset to its end; Transfer is the
	// LOAD_IMAGE or SAVE_IMAGE command's own time on the node.
	Took, Transfer time.Duration
	// Disk is the device written or read; Bytes how much of it; Stored
	// the image's bytes as stored (compressed); SHA256 their checksum.
	Disk   string
	Bytes  int64
	Stored int64
	// Skipped (a load of a chunked image) is how much of the disk already
	// held the image and was left as it was; Fetched how much of the image
	// came from the appliance (Stored, for a load).
	Skipped, Fetched int64
	SHA256           string
	// Before is the boot link the node had when the job began (nil if
	// none); Restored says whether the job put it back, and Restore what
	// became of it, in words (why it was not put back, if it was not).
	Before   *apiv1.BootLink
	Restored bool
	Restore  string
}

// ErrPreflight marks a job refused before any node was touched.
var ErrPreflight = errors.New("imaging")

// Run carries out job. Its error is for a job refused before any node was
// touched (it wraps ErrPreflight); otherwise it returns one Result per
// node, in job.Nodes order, and a nil error even if nodes failed. Results
// and updates name each node by its HRN.
func Run(ctx context.Context, am AM, job Job) ([]Result, error) {
	job = withDefaults(job)
	nodes, err := preflight(ctx, am, job)
	if err != nil {
		return nil, err
	}
	before, err := linksBefore(ctx, am)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, job.Timeout)
	defer cancel()
	r := &runner{am: am, job: job, before: before}

	links, err := r.setLinks(ctx, nodes)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("the job's %v ran out: %w", job.Timeout, err)
		}
		// No node was touched: their links as they were, also the ones
		// this job replaced before it failed.
		for _, n := range nodes {
			var res Result
			r.restore(ctx, n, &res, nodeState{})
			if res.Before != nil && !res.Restored {
				err = fmt.Errorf("%w; %s: %s", err, n.HRN, res.Restore)
			}
		}
		return nil, err
	}
	results := make([]Result, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var st nodeState
			results[i] = r.node(ctx, n, links[i], &st)
			r.restore(ctx, n, &results[i], st)
		}()
	}
	wg.Wait()
	r.clearLinks(ctx)
	return results, nil
}

func withDefaults(job Job) Job {
	if job.Timeout <= 0 {
		job.Timeout = DefaultTimeout
	}
	if job.BootTimeout <= 0 {
		job.BootTimeout = DefaultBootTimeout
	}
	if job.Attempts <= 0 {
		job.Attempts = DefaultAttempts
	}
	if job.Poll <= 0 {
		job.Poll = DefaultPoll
	}
	return job
}

// preflight checks everything that can be checked without touching a
// node, and lists every problem it finds, not just the first.
func preflight(ctx context.Context, am AM, job Job) ([]apiv1.Node, error) {
	var problems []string
	switch job.Op {
	case Load, Save:
	default:
		return nil, fmt.Errorf("%w: unknown operation %q", ErrPreflight, job.Op)
	}
	if len(job.Nodes) == 0 {
		return nil, fmt.Errorf("%w: no nodes", ErrPreflight)
	}
	if job.Image == "" {
		return nil, fmt.Errorf("%w: no disk image named", ErrPreflight)
	}
	if job.Op == Save && len(job.Nodes) != 1 {
		return nil, fmt.Errorf("%w: save takes one node, not %d: an image holds one disk", ErrPreflight, len(job.Nodes))
	}

	stored, err := am.DiskImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list disk images: %w", ErrPreflight, err)
	}
	exists := slices.ContainsFunc(stored, func(d proto.DiskImage) bool { return d.Name == job.Image })
	switch {
	case job.Op == Load && !exists:
		problems = append(problems, fmt.Sprintf("disk image %q does not exist on the appliance (nbctl disk list)", job.Image))
	case job.Op == Save && exists && !job.Replace:
		problems = append(problems, fmt.Sprintf("disk image %q exists already (--replace overwrites it)", job.Image))
	case job.Op == Save && !imagename.ValidDisk(job.Image):
		problems = append(problems, fmt.Sprintf("disk image name %q: %s", job.Image, imagename.DiskRule))
	}
	if job.PXEImage != "" {
		imgs, err := am.Images(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: list PXE images: %w", ErrPreflight, err)
		}
		if !slices.ContainsFunc(imgs, func(i apiv1.Image) bool { return i.Name == job.PXEImage }) {
			problems = append(problems, fmt.Sprintf("PXE image %q is not in the inventory (nbctl images)", job.PXEImage))
		}
	}

	// A name is an HRN or a host name (the appliance resolves it); from
	// here on the node goes by the HRN it found.
	var nodes []apiv1.Node
	seen := map[string]string{} // HRN -> the name that found it
	for _, name := range job.Nodes {
		n, err := am.Node(ctx, name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("node %s: %v", name, err))
			continue
		}
		if first, dup := seen[n.HRN]; dup {
			if first == name {
				problems = append(problems, fmt.Sprintf("node %s is named twice", name))
			} else {
				problems = append(problems, fmt.Sprintf("nodes %s and %s are both %s", first, name, n.HRN))
			}
			continue
		}
		seen[n.HRN] = name
		if p := strings.TrimSpace(n.Power); p == "" || p == "none" {
			problems = append(problems, fmt.Sprintf("node %s has no power driver (set power: in the inventory): it cannot be reset", n.HRN))
		}
		nodes = append(nodes, n)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: nothing done:\n  %s", ErrPreflight, strings.Join(problems, "\n  "))
	}
	return nodes, nil
}

type runner struct {
	am     AM
	job    Job
	before map[string]apiv1.BootLink // the nodes' links when the job began

	progressMu sync.Mutex

	linksMu sync.Mutex
	linked  map[string]bool // nodes whose link this run set and has not cleared
	setAt   map[string]setAt
}

// setAt is when the job set a node's link: by the appliance's clock and by
// ours, to tell how much of a link's lifetime is left without comparing
// the two clocks.
type setAt struct {
	server time.Time
	local  time.Time
}

func (r *runner) report(u Update) {
	if r.job.Progress == nil {
		return
	}
	r.progressMu.Lock()
	defer r.progressMu.Unlock()
	r.job.Progress(u)
}

// setLinks points every node at the RAM image, all or nothing. A link
// lives long enough for every reset the job may make.
func (r *runner) setLinks(ctx context.Context, nodes []apiv1.Node) ([]apiv1.BootLink, error) {
	lifetime := time.Duration(r.job.Attempts)*r.job.BootTimeout + time.Minute
	r.linked, r.setAt = map[string]bool{}, map[string]setAt{}
	var links []apiv1.BootLink
	for _, n := range nodes {
		var l apiv1.BootLink
		err := r.again(ctx, unreached, func() (err error) {
			l, err = r.am.SetBoot(ctx, n.HRN, r.job.PXEImage, lifetime)
			return err
		})
		if _, had := r.before[n.HRN]; err != nil && cut(err) && !had {
			// The appliance went away after it may have set the link:
			// clear it too (one an EC had set stays as it was, for want
			// of knowing).
			r.linksMu.Lock()
			r.linked[n.HRN] = true
			r.linksMu.Unlock()
		}
		if err != nil {
			r.clearLinks(ctx)
			return nil, fmt.Errorf("%w: set the PXE link of %s: %w (links set before it cleared, no node touched)", ErrPreflight, n.HRN, err)
		}
		r.linksMu.Lock()
		r.linked[n.HRN] = true
		r.setAt[n.HRN] = setAt{server: l.SetAt, local: time.Now()}
		r.linksMu.Unlock()
		links = append(links, l)
	}
	return links, nil
}

// clearLink removes one node's link, once.
func (r *runner) clearLink(ctx context.Context, hrn string) error {
	r.linksMu.Lock()
	defer r.linksMu.Unlock()
	if !r.linked[hrn] {
		return nil
	}
	if err := r.again(ctx, cut, func() error { return r.am.ClearBoot(ctx, hrn) }); err != nil {
		return fmt.Errorf("clear its PXE link: %w", err)
	}
	delete(r.linked, hrn)
	return nil
}

// clearLinks removes every link still set, also when ctx is done (job
// timeout, Ctrl-C): a node must not netboot the RAM image again by
// surprise at its next reboot.
func (r *runner) clearLinks(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	r.linksMu.Lock()
	var hrns []string
	for hrn := range r.linked {
		hrns = append(hrns, hrn)
	}
	r.linksMu.Unlock()
	slices.Sort(hrns)
	for _, hrn := range hrns {
		if err := r.clearLink(ctx, hrn); err != nil {
			r.report(Update{Node: hrn, Phase: PhaseFailed, Note: err.Error()})
		}
	}
}

// nodeState is what the restore of a node's earlier link needs to know of
// how far the node got.
type nodeState struct {
	// rebooted: REBOOT (or a reset) was sent after the transfer, so the
	// node is booting what its PXE configuration says.
	rebooted bool
	// mark is the node's last event before that reboot, unless reading
	// its timeline failed (markErr).
	mark    int64
	markErr error
}

// node takes one node through the flow.
func (r *runner) node(ctx context.Context, n apiv1.Node, link apiv1.BootLink, st *nodeState) Result {
	res := Result{Node: n.HRN, Phase: PhaseNetboot}
	start := time.Now()
	err := r.steps(ctx, n, link, &res, st)
	res.Took = time.Since(start)
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, errBootTimeout) {
			why := "interrupted"
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = fmt.Sprintf("the job's %v ran out", r.job.Timeout)
			}
			err = fmt.Errorf("%s: %s while %s: %w", n.HRN, why, res.Phase, err)
		}
		res.Err = err
		r.report(Update{Node: n.HRN, Phase: PhaseFailed, Note: err.Error()})
		return res
	}
	res.Phase = PhaseDone
	r.report(Update{Node: n.HRN, Phase: PhaseDone})
	return res
}

func (r *runner) steps(ctx context.Context, n apiv1.Node, link apiv1.BootLink, res *Result, st *nodeState) error {
	if err := r.netboot(ctx, n, link.Image, res); err != nil {
		return err
	}
	res.Phase = PhaseEnrolled
	r.report(Update{Node: n.HRN, Phase: PhaseEnrolled})
	// Before the disk is written: the reboot at the end must boot the disk.
	if err := r.clearLink(ctx, n.HRN); err != nil {
		return fmt.Errorf("%s: %w", n.HRN, err)
	}
	if err := r.transfer(ctx, n, res); err != nil {
		return err
	}
	if r.job.NoReboot {
		return nil
	}
	res.Phase = PhaseReboot
	r.report(Update{Node: n.HRN, Phase: PhaseReboot})
	if _, ok := r.before[n.HRN]; ok {
		// Where the reboot starts on the node's timeline: the earlier
		// link goes back once the node has read its PXE configuration.
		st.markErr = r.again(ctx, cut, func() (err error) {
			st.mark, err = r.lastEvent(ctx, n.HRN)
			return err
		})
	}
	st.rebooted = true
	return r.reboot(ctx, n)
}

var errBootTimeout = errors.New("no RC enrolled in time")

// netboot resets the node until its RC enrolls from image, at most
// Attempts times: again after WRONG_IMAGE (OMF's rule) and after a boot
// that brought no RC up in BootTimeout.
func (r *runner) netboot(ctx context.Context, n apiv1.Node, image string, res *Result) error {
	r.report(Update{Node: n.HRN, Phase: PhaseNetboot, Note: "netbooting " + image})
	for attempt := 1; ; attempt++ {
		var before proto.RCStatus
		err := r.again(ctx, cut, func() (err error) {
			before, err = r.am.RCStatus(ctx, n.HRN)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: RC status: %w", n.HRN, err)
		}
		if err := r.reset(ctx, n.HRN); err != nil {
			return fmt.Errorf("%s: %w", n.HRN, err)
		}
		res.Resets++
		reply, err := r.enroll(ctx, n.HRN, image, before)
		if errors.Is(err, errBootTimeout) && attempt < r.job.Attempts {
			// A lost DHCP offer or TFTP block can stall a boot ROM for
			// good; another reset is what a person would try.
			r.report(Update{Node: n.HRN, Phase: PhaseNetboot, Note: err.Error() + ": reset again"})
			continue
		}
		if err != nil {
			return err
		}
		if reply.Reply == proto.ReplyEnrolled {
			return nil
		}
		note := fmt.Sprintf("RC answered %s: it runs %q, not %q", reply.Reply, reply.Image, image)
		if attempt == r.job.Attempts {
			return fmt.Errorf("%s: %s after %d resets", n.HRN, note, attempt)
		}
		r.report(Update{Node: n.HRN, Phase: PhaseNetboot, Note: note + ": reset again"})
	}
}

// reset resets the node through its power driver, or switches it on if
// it is off: many BMCs refuse to reset a node that is switched off.
func (r *runner) reset(ctx context.Context, hrn string) error {
	rerr := r.again(ctx, unreached, func() error {
		_, err := r.am.Power(ctx, hrn, "reset")
		return err
	})
	if rerr == nil {
		return nil
	}
	if st, err := r.am.Power(ctx, hrn, "status"); err != nil || st != "off" {
		return fmt.Errorf("reset: %w", rerr)
	}
	if _, err := r.am.Power(ctx, hrn, "on"); err != nil {
		return fmt.Errorf("reset refused (%w), and power on: %w", rerr, err)
	}
	return nil
}

// enrollReply is the end of an ENROLL command, with the image the RC
// enrolled with.
type enrollReply struct {
	Reply, Image string
}

// enroll waits, at most BootTimeout, for an enrollment newer than before,
// then asks that RC whether it runs image (OMF's ENROLL).
func (r *runner) enroll(ctx context.Context, hrn, image string, before proto.RCStatus) (enrollReply, error) {
	wait, cancel := context.WithTimeout(ctx, r.job.BootTimeout)
	defer cancel()
	var st proto.RCStatus
	err := r.poll(wait, func() (bool, error) {
		var err error
		st, err = r.am.RCStatus(wait, hrn)
		// A node booting the RAM image enrolls anew: an older
		// enrollment is the RC of the boot before the reset.
		return err == nil && st.Enrolled && st.Enrollment != before.Enrollment, nil
	})
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return enrollReply{}, fmt.Errorf("%s: %w: none within %v of the reset (is it netbooting? nbctl nodes events %s)",
				hrn, errBootTimeout, r.job.BootTimeout, hrn)
		}
		return enrollReply{}, err
	}
	cmd, err := r.run(wait, hrn, proto.CommandRequest{Type: proto.Enroll, Image: image}, nil)
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return enrollReply{}, fmt.Errorf("%s: %w: its RC enrolled but did not answer ENROLL within %v", hrn, errBootTimeout, r.job.BootTimeout)
		}
		return enrollReply{}, fmt.Errorf("%s: ENROLL: %w", hrn, err)
	}
	if cmd.State != proto.StateDone {
		return enrollReply{}, fmt.Errorf("%s: ENROLL %s: %s", hrn, cmd.State, cmd.Error)
	}
	return enrollReply{Reply: cmd.Reply, Image: st.Image}, nil
}

// transfer runs LOAD_IMAGE or SAVE_IMAGE on the node's RC.
func (r *runner) transfer(ctx context.Context, n apiv1.Node, res *Result) error {
	typ, phase := proto.LoadImage, PhaseLoad
	if r.job.Op == Save {
		typ, phase = proto.SaveImage, PhaseSave
	}
	res.Phase = phase
	r.report(Update{Node: n.HRN, Phase: phase})
	req := proto.CommandRequest{Type: typ, Image: r.job.Image, Disk: r.job.Disk}
	// One image onto several nodes: the appliance sends it once, to all.
	req.Multicast = typ == proto.LoadImage && len(r.job.Nodes) > 1
	st, err := r.run(ctx, n.HRN, req, func(s proto.CommandStatus) {
		if s.State == proto.StateRunning {
			r.report(Update{Node: n.HRN, Phase: phase, Progress: s.Progress})
		}
	})
	res.Disk = st.Disk
	if err != nil {
		return fmt.Errorf("%s: %s: %w", n.HRN, typ, err)
	}
	if st.StartedAt != nil && st.FinishedAt != nil {
		res.Transfer = st.FinishedAt.Sub(*st.StartedAt)
	}
	res.SHA256 = st.SHA256
	if typ == proto.LoadImage {
		res.Bytes, res.Stored = st.Progress.Written, st.Progress.Done
		res.Skipped, res.Fetched = st.Progress.Skipped, st.Progress.Fetched
		if res.Fetched > 0 || res.Skipped > 0 {
			// An RC that counts what it fetched: for a chunked image Done
			// counts the disk.
			res.Stored = res.Fetched
		}
	} else {
		res.Bytes, res.Stored = st.Progress.Done, st.Progress.Written
	}
	r.report(Update{Node: n.HRN, Phase: phase, Progress: st.Progress})
	if st.State != proto.StateDone {
		return fmt.Errorf("%s: %s %s %s: %s", n.HRN, typ, r.job.Image, st.State, st.Error)
	}
	return nil
}

// reboot asks the RC to reboot the node (it syncs first); if the RC does
// not take the command in time, the power driver resets the node.
func (r *runner) reboot(ctx context.Context, n apiv1.Node) error {
	wait, cancel := context.WithTimeout(ctx, rebootTimeout)
	defer cancel()
	st, err := r.run(wait, n.HRN, proto.CommandRequest{Type: proto.Reboot}, nil)
	if err == nil && st.State == proto.StateDone {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	why := fmt.Sprint(err)
	if err == nil {
		why = st.State + ": " + st.Error
	}
	r.report(Update{Node: n.HRN, Phase: PhaseReboot, Note: "REBOOT " + why + ": resetting it"})
	if err := r.reset(ctx, n.HRN); err != nil {
		return fmt.Errorf("%s: REBOOT %s, and %w", n.HRN, why, err)
	}
	return nil
}

// run queues a command and polls it until it is over.
func (r *runner) run(ctx context.Context, hrn string, req proto.CommandRequest, seen func(proto.CommandStatus)) (proto.CommandStatus, error) {
	var st proto.CommandStatus
	err := r.again(ctx, unreached, func() (err error) {
		st, err = r.am.SendCommand(ctx, hrn, req)
		return err
	})
	if err != nil {
		return st, err
	}
	err = r.poll(ctx, func() (bool, error) {
		s, err := r.am.Command(ctx, st.ID)
		if err != nil {
			return false, nil // the appliance may be restarting: ask again
		}
		st = s
		if seen != nil {
			seen(s)
		}
		return proto.Terminal(s.State), nil
	})
	return st, err
}

// poll calls done every Poll until it says true or fails, or ctx ends.
func (r *runner) poll(ctx context.Context, done func() (bool, error)) error {
	t := time.NewTicker(r.job.Poll)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
