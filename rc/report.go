package rc

import (
	"context"
	"sync"
	"time"

	"github.com/orbit-lab/netboot/rc/proto"
)

// maxReportOutput bounds the output one report carries; more waits for
// the next report.
const maxReportOutput = 256 << 10

// finalGrace is how long the end of a command is still reported for once
// the RC is stopping.
const finalGrace = 3 * time.Second

// reporter sends one command's reports in order, numbered, each retried
// until the appliance takes it: output and progress gathered since the last
// one, every ReportEvery or sooner when much output waits.
type reporter struct {
	r  *rc
	c  *client // the enrollment's, as when the command came
	id int64

	send1 sync.Mutex // one report on the way at a time, in Seq order
	seq   int64
	gone  bool // the appliance no longer wants reports on this command

	mu         sync.Mutex
	stdout     []byte
	stderr     []byte
	progressFn func() proto.Progress
	kick       chan struct{}
	stop       chan struct{}
	stopped    chan struct{}
	started    bool
}

func newReporter(r *rc, c *client, id int64) *reporter {
	return &reporter{r: r, c: c, id: id, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
}

// streamWriter is stdout or stderr of a command, feeding the reporter.
type streamWriter struct {
	p      *reporter
	stderr bool
}

func (w streamWriter) Write(b []byte) (int, error) {
	p := w.p
	p.mu.Lock()
	if w.stderr {
		p.stderr = append(p.stderr, b...)
	} else {
		p.stdout = append(p.stdout, b...)
	}
	much := len(p.stdout)+len(p.stderr) >= maxReportOutput
	p.mu.Unlock()
	if much {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

// watch makes every report carry the progress that f tells.
func (p *reporter) watch(f func() proto.Progress) {
	p.mu.Lock()
	p.progressFn = f
	p.mu.Unlock()
}

// start sends what accumulates every ReportEvery, until finish.
func (p *reporter) start(ctx context.Context) {
	p.mu.Lock()
	p.started = true
	p.mu.Unlock()
	go func() {
		defer close(p.stopped)
		t := time.NewTicker(p.r.cfg.ReportEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			case <-p.kick:
			}
			if rep, ok := p.take(false); ok {
				p.send(ctx, rep)
			}
		}
	}()
}

// take makes a report of what accumulated; ok is false if there is nothing
// to say. With all, it takes all output, else at most maxReportOutput.
func (p *reporter) take(all bool) (proto.Report, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rep := proto.Report{State: proto.StateRunning}
	if p.progressFn != nil {
		pr := p.progressFn()
		rep.Progress = &pr
	}
	room := maxReportOutput
	if all {
		room = len(p.stdout) + len(p.stderr)
	}
	n := min(len(p.stdout), room)
	rep.Stdout, p.stdout = p.stdout[:n:n], p.stdout[n:]
	room -= n
	n = min(len(p.stderr), room)
	rep.Stderr, p.stderr = p.stderr[:n:n], p.stderr[n:]
	return rep, rep.Progress != nil || len(rep.Stdout) > 0 || len(rep.Stderr) > 0
}

// send numbers a report and sends it until the appliance takes it, the
// appliance refuses it for good, or ctx is done (for a final report: a
// little after).
func (p *reporter) send(ctx context.Context, rep proto.Report) {
	p.send1.Lock()
	defer p.send1.Unlock()
	if p.gone {
		return
	}
	p.seq++
	rep.Seq = p.seq
	final := proto.Terminal(rep.State)
	backoff := 250 * time.Millisecond
	var giveUp time.Time
	for {
		sendCtx := ctx
		if final {
			sendCtx = context.WithoutCancel(ctx) // the end must be told, even while stopping
		}
		err := p.c.report(sendCtx, p.id, rep)
		if err == nil {
			return
		}
		if permanent(err) {
			p.gone = true
			p.r.log.Warn("the appliance refused a report; no more on this command", "id", p.id, "err", err)
			return
		}
		if ctx.Err() != nil {
			if !final {
				return
			}
			if giveUp.IsZero() {
				giveUp = time.Now().Add(finalGrace)
			}
			if time.Now().After(giveUp) {
				p.r.log.Warn("stopping: the end of a command could not be reported", "id", p.id, "err", err)
				return
			}
		}
		p.r.log.Debug("report failed; retrying", "id", p.id, "seq", rep.Seq, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			time.Sleep(min(backoff, 250*time.Millisecond))
		}
		backoff = min(2*backoff, p.r.cfg.MaxBackoff)
	}
}

// finish stops the periodic reports and sends the final one, with all the
// output still waiting.
func (p *reporter) finish(ctx context.Context, final proto.Report) {
	p.stopPeriodic()
	for {
		rest, ok := p.take(false)
		if !ok {
			break
		}
		if len(rest.Stdout)+len(rest.Stderr) < maxReportOutput {
			// The last of it goes with the final report.
			final.Stdout, final.Stderr = rest.Stdout, rest.Stderr
			if final.Progress == nil {
				final.Progress = rest.Progress
			}
			break
		}
		p.send(ctx, rest)
	}
	p.send(ctx, final)
}

// stopPeriodic stops the periodic reports, if they started.
func (p *reporter) stopPeriodic() {
	p.mu.Lock()
	started := p.started
	p.mu.Unlock()
	if started {
		close(p.stop)
		<-p.stopped
	}
}
