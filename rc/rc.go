// Package rc is the orbit-pxe RAM image's Resource Controller (run as
// cmd/orbit-rc, started and restarted by orbit-init): it enrolls with the
// appliance it found at boot, then long-polls it for commands and runs
// them: EXECUTE, ENROLL, LOAD_IMAGE, SAVE_IMAGE, REBOOT, POWEROFF (package
// rc/proto defines the protocol).
//
// It runs only commands signed with the secret of its own enrollment, and
// only reaches the disks its DiskAllow patterns name. It reconnects with
// back-off when the appliance is away and enrolls again when the appliance
// no longer knows it.
package rc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"

	"github.com/orbit-lab/netboot/internal/atomicfile"
)

// Version is the RC's protocol version, sent at enrollment.
const Version = "orbit-rc/1"

// DefaultDiskAllow are the disks LOAD_IMAGE and SAVE_IMAGE may touch
// unless configured otherwise: whole disks and partitions of the usual
// kinds. A path is checked after its symlinks are resolved.
var DefaultDiskAllow = []string{"/dev/sd*", "/dev/hd*", "/dev/vd*", "/dev/xvd*", "/dev/nvme*n*", "/dev/mmcblk*"}

// Config configures the RC. Only AM is required.
type Config struct {
	AM        string   // the appliance's base URL, http://host:port (see FindAM)
	ImageFile string   // the RAM image's name (default /.orbit_image)
	StateDir  string   // keeps the enrollment across RC restarts; "" keeps nothing
	DiskAllow []string // glob patterns of the disks it may read and write (default DefaultDiskAllow)
	MACs      []string // MACs to enroll with (default: ControlMAC, then every interface's)
	// ControlMAC is the control interface's MAC (orbit-init's
	// ORBIT_CONTROL_MAC), sent first.
	ControlMAC string
	Hostname   string // default os.Hostname()
	ImageName  string // used when ImageFile cannot be read (orbit-init's ORBIT_IMAGE)
	// Shell runs an EXECUTE command given as one line (nbctl rc exec
	// --shell) as Shell -c LINE (default /bin/sh; the RAM image has one
	// only when built with the debug shell). Args run without it.
	Shell string

	SysBlock   string // default /sys/block
	Mounts     string // default /proc/mounts
	BootIDFile string // default /proc/sys/kernel/random/boot_id
	KernelFile string // default /proc/sys/kernel/osrelease
	EFIDir     string // default /sys/firmware/efi

	PollWait    time.Duration // how long a poll may wait (default 25s; the appliance may cap it)
	MinBackoff  time.Duration // first wait after a failure (default 1s)
	MaxBackoff  time.Duration // the wait doubles up to this (default 30s)
	ReportEvery time.Duration // output and progress are sent at least this often (default 500ms)
	// LoadRetry is how long a load of a chunked image waits for an
	// appliance that fails or cannot be reached (restarting, say) before it
	// fails (default DefaultLoadRetry); it resumes where it stopped.
	LoadRetry time.Duration

	// Reboot and Poweroff are called after the command's success has been
	// reported (default: sync, then signal PID 1: SIGTERM to reboot,
	// SIGUSR2 to power off, as orbit-init expects). PowerCheck, if set, is
	// called first and refuses the command by failing.
	Reboot, Poweroff func(ctx context.Context) error
	PowerCheck       func() error

	HTTP *http.Client // default: no proxy, 5s connect timeout
	Log  *slog.Logger // default: discard
}

func (c Config) withDefaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.ImageFile, "/.orbit_image")
	def(&c.Shell, "/bin/sh")
	def(&c.SysBlock, "/sys/block")
	def(&c.Mounts, "/proc/mounts")
	def(&c.BootIDFile, "/proc/sys/kernel/random/boot_id")
	def(&c.KernelFile, "/proc/sys/kernel/osrelease")
	def(&c.EFIDir, "/sys/firmware/efi")
	if c.DiskAllow == nil {
		c.DiskAllow = DefaultDiskAllow
	}
	if c.PollWait <= 0 {
		c.PollWait = 25 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = max(30*time.Second, c.MinBackoff)
	}
	if c.LoadRetry <= 0 {
		c.LoadRetry = DefaultLoadRetry
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = 500 * time.Millisecond
	}
	if c.Reboot == nil && c.Poweroff == nil && c.PowerCheck == nil {
		c.PowerCheck = canSignalInit
	}
	if c.Reboot == nil {
		c.Reboot = signalInit(sigReboot)
	}
	if c.Poweroff == nil {
		c.Poweroff = signalInit(sigPoweroff)
	}
	if c.HTTP == nil {
		c.HTTP = newHTTPClient()
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// enrollment is what the RC keeps of its enrollment (in StateDir).
type enrollment struct {
	AM         string `json:"am"`
	HRN        string `json:"hrn"`
	Enrollment int64  `json:"enrollment"`
	Secret     string `json:"secret"`
	BootID     string `json:"boot_id"`
}

// rc is one running RC.
type rc struct {
	cfg  Config
	log  *slog.Logger
	base *client     // without a secret: enrollment
	enr  *enrollment // nil until enrolled
	api  *client     // with the enrollment's secret; replaced, never changed
	// tasks are the commands being run (or whose end is being reported),
	// by ID: every poll names them, and the appliance fails the others.
	mu    sync.Mutex
	gen   uint64           // counts enrollments: command IDs are per enrollment
	tasks map[int64]uint64 // command ID -> the gen it came in
	seen  map[int64]bool   // every command ID taken in this enrollment
	wg    sync.WaitGroup
}

// Run enrolls and serves commands until ctx is done. It returns nil then,
// after the commands under way have been stopped and their end reported
// (briefly); it returns an error only for a configuration it cannot use.
func Run(ctx context.Context, cfg Config) error {
	if cfg.AM == "" {
		return ErrNoAM
	}
	am, err := normalizeAM(cfg.AM)
	if err != nil {
		return err
	}
	cfg.AM = am
	cfg = cfg.withDefaults()
	r := &rc{cfg: cfg, log: cfg.Log, base: &client{base: am, http: cfg.HTTP}, tasks: map[int64]uint64{}, seen: map[int64]bool{}}
	r.loadState()
	r.loop(ctx)
	r.wg.Wait()
	return nil
}

// loop enrolls and polls, with back-off after failures.
func (r *rc) loop(ctx context.Context) {
	backoff := r.cfg.MinBackoff
	failed := func(what string, err error) {
		d := backoff/2 + rand.N(backoff/2+1) // jitter, so that a rack does not come back in step
		r.log.Warn(what+" failed; retrying", "am", r.cfg.AM, "err", err, "in", d.Round(time.Millisecond))
		sleep(ctx, d)
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
	for ctx.Err() == nil {
		if r.enr == nil {
			if err := r.enroll(ctx); err != nil {
				if ctx.Err() == nil {
					failed("enroll", err)
				}
				continue
			}
			backoff = r.cfg.MinBackoff
		}
		env, err := r.current().poll(ctx, r.cfg.PollWait, r.running())
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrUnknownEnrollment):
			r.log.Warn("the appliance does not know this enrollment; enrolling again", "hrn", r.enr.HRN, "enrollment", r.enr.Enrollment)
			r.setEnrollment(nil)
			continue
		case err != nil:
			failed("poll", err)
			continue
		}
		backoff = r.cfg.MinBackoff
		if env != nil {
			r.dispatch(ctx, *env)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// facts gathers what the RC says about its node.
func (r *rc) facts() proto.EnrollRequest {
	cfg := r.cfg
	macs := cfg.MACs
	if len(macs) == 0 {
		macs = localMACs(cfg.ControlMAC)
	}
	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	image := readTrim(cfg.ImageFile)
	if image == "" {
		image = cfg.ImageName
	}
	f := proto.EnrollRequest{
		MACs:      macs,
		Hostname:  host,
		Image:     image,
		Addresses: localAddresses(),
		Kernel:    readTrim(cfg.KernelFile),
		BootID:    readTrim(cfg.BootIDFile),
		Disks:     localDisks(cfg.SysBlock),
		Version:   Version,
	}
	f.Firmware, f.SecureBoot = localFirmware(cfg.EFIDir)
	return f
}

func (r *rc) enroll(ctx context.Context) error {
	f := r.facts()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := r.base.enroll(ctx, f)
	if err != nil {
		return err
	}
	if d, err := time.ParseDuration(resp.PollWait); err == nil && d > 0 && d < r.cfg.PollWait {
		r.cfg.PollWait = d
	}
	r.setEnrollment(&enrollment{AM: r.cfg.AM, HRN: resp.HRN, Enrollment: resp.Enrollment, Secret: resp.Secret, BootID: f.BootID})
	r.log.Info("enrolled", "am", r.cfg.AM, "hrn", resp.HRN, "enrollment", resp.Enrollment, "image", f.Image, "macs", f.MACs)
	return nil
}

const stateFile = "enrollment.json"

// setEnrollment makes e the current enrollment (nil: none) and keeps it in
// StateDir.
func (r *rc) setEnrollment(e *enrollment) {
	r.mu.Lock()
	r.enr, r.api = e, nil
	r.gen++
	r.seen = map[int64]bool{} // a new enrollment numbers its commands anew (a new appliance database may)
	if e != nil {
		r.api = r.base.withSecret(e.Secret)
	}
	r.mu.Unlock()
	if r.cfg.StateDir == "" {
		return
	}
	path := filepath.Join(r.cfg.StateDir, stateFile)
	if e == nil {
		os.Remove(path)
		return
	}
	if err := writeState(path, e); err != nil {
		r.log.Warn("keeping the enrollment", "path", path, "err", err)
	}
}

func writeState(path string, e *enrollment) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// loadState takes up the enrollment an earlier run of the RC kept, if it is
// for the same appliance and the same boot.
func (r *rc) loadState() {
	if r.cfg.StateDir == "" {
		return
	}
	path := filepath.Join(r.cfg.StateDir, stateFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var e enrollment
	if err := json.Unmarshal(data, &e); err != nil || e.Secret == "" {
		r.log.Warn("ignoring a broken kept enrollment", "path", path, "err", err)
		return
	}
	if e.AM != r.cfg.AM || e.BootID != readTrim(r.cfg.BootIDFile) {
		return
	}
	r.enr, r.api = &e, r.base.withSecret(e.Secret)
	r.log.Info("resuming the kept enrollment", "hrn", e.HRN, "enrollment", e.Enrollment)
}

// current is the client of the current enrollment.
func (r *rc) current() *client {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.api
}

// running lists the commands under way, for the next poll.
func (r *rc) running() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]int64, 0, len(r.tasks))
	for id, gen := range r.tasks {
		if gen == r.gen {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// dispatch checks a command and starts it, or reports why it will not run.
// The command is among r.tasks before dispatch returns, so that the next
// poll names it.
func (r *rc) dispatch(ctx context.Context, env proto.Envelope) {
	e := r.enr
	cmd, err := proto.Open(env, e.Secret)
	refusal := ""
	switch {
	case errors.Is(err, proto.ErrBadMAC):
		refusal = "refused: the command's MAC is missing or wrong: it was not signed by the appliance this RC enrolled with"
	case err != nil:
		refusal = "refused: " + err.Error()
	case cmd.Enrollment != e.Enrollment || cmd.HRN != e.HRN:
		refusal = fmt.Sprintf("refused: the command is for enrollment %d of %s, this RC is enrollment %d of %s",
			cmd.Enrollment, cmd.HRN, e.Enrollment, e.HRN)
	}
	r.mu.Lock()
	dup := cmd.ID != 0 && r.seen[cmd.ID]
	gen := r.gen
	if cmd.ID != 0 && !dup {
		r.seen[cmd.ID] = true
		r.tasks[cmd.ID] = gen
	}
	r.mu.Unlock()
	if dup {
		r.log.Warn("command received twice; ignored", "id", cmd.ID)
		return
	}
	if refusal != "" {
		r.log.Warn("command refused", "id", cmd.ID, "why", refusal)
		if cmd.ID == 0 {
			return // nothing to report on
		}
	}
	rep := newReporter(r, r.current(), cmd.ID)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.taskEnded(cmd.ID, gen)
		if refusal != "" {
			rep.finish(ctx, proto.Report{State: proto.StateRefused, Reply: proto.ReplyError, Error: refusal})
			return
		}
		r.run(ctx, cmd, rep)
	}()
}

func (r *rc) taskEnded(id int64, gen uint64) {
	r.mu.Lock()
	if r.tasks[id] == gen {
		delete(r.tasks, id)
	}
	r.mu.Unlock()
}

// run runs one command and reports its end.
func (r *rc) run(ctx context.Context, cmd proto.Command, rep *reporter) {
	log := r.log.With("id", cmd.ID, "type", cmd.Type)
	log.Info("command", "command", cmd.Command, "args", cmd.Args, "image", cmd.Image, "disk", cmd.Disk)
	start := time.Now()
	var ack sync.WaitGroup
	ack.Go(func() { rep.send(ctx, proto.Report{State: proto.StateRunning}) }) // the acknowledgement
	var final proto.Report
	switch cmd.Type {
	case proto.Execute:
		final = r.execute(ctx, cmd, rep)
	case proto.Enroll:
		final = r.checkImage(cmd)
	case proto.LoadImage:
		final = r.loadImage(ctx, cmd, rep)
	case proto.SaveImage:
		final = r.saveImage(ctx, cmd, rep)
	case proto.Reboot, proto.Poweroff:
		ack.Wait()
		r.power(ctx, cmd, rep)
		return
	default:
		final = proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: fmt.Sprintf("unknown command type %q", cmd.Type)}
	}
	ack.Wait()
	log.Info("command ended", "state", final.State, "reply", final.Reply, "error", final.Error, "took", time.Since(start).Round(time.Millisecond))
	rep.finish(ctx, final)
}

// checkImage answers ENROLL: is this the RAM image the appliance expects?
func (r *rc) checkImage(cmd proto.Command) proto.Report {
	have := readTrim(r.cfg.ImageFile)
	if have == "" {
		have = r.cfg.ImageName
	}
	if have == "" {
		return proto.Report{State: proto.StateFailed, Reply: proto.ReplyError, Error: "the RAM image's name is unknown: " + r.cfg.ImageFile + " is missing or empty"}
	}
	if have != cmd.Image {
		return proto.Report{State: proto.StateDone, Reply: proto.ReplyWrongImage, Error: fmt.Sprintf("this node runs %q, not %q", have, cmd.Image)}
	}
	return proto.Report{State: proto.StateDone, Reply: proto.ReplyEnrolled}
}
