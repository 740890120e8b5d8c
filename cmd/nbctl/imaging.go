package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/imaging"
)

// The Experiment Controller's imaging commands, load and save (package
// imaging).

func (k *cli) load(ctx context.Context, args []string) error {
	return k.imaging(ctx, imaging.Load, args)
}

func (k *cli) save(ctx context.Context, args []string) error {
	return k.imaging(ctx, imaging.Save, args)
}

func (k *cli) imaging(ctx context.Context, op imaging.Op, args []string) error {
	fs, client := k.nodeFlags(string(op))
	var nodes string
	if op == imaging.Load {
		fs.StringVar(&nodes, "nodes", "", "the nodes (HRNs or host names), comma-separated")
	} else {
		fs.StringVar(&nodes, "node", "", "the node (HRN or host name)")
	}
	job := imaging.Job{Op: op}
	fs.StringVar(&job.Image, "image", "", "the disk image")
	fs.StringVar(&job.PXEImage, "pxe-image", "", "the RAM image to netboot (default: each node's inventory image)")
	fs.StringVar(&job.Disk, "disk", "", "the disk (default: each node's inventory disk)")
	fs.DurationVar(&job.Timeout, "timeout", imaging.DefaultTimeout, "give up on nodes not done after this long")
	fs.DurationVar(&job.BootTimeout, "boot-timeout", imaging.DefaultBootTimeout, "how long a reset node may take to enroll")
	fs.IntVar(&job.Attempts, "attempts", imaging.DefaultAttempts, "resets per node before it is given up")
	fs.BoolVar(&job.NoReboot, "no-reboot", false, "leave the nodes in the RAM image at the end")
	fs.DurationVar(&job.Poll, "poll", imaging.DefaultPoll, "how often the appliance is asked how the nodes are doing")
	if op == imaging.Save {
		fs.BoolVar(&job.Replace, "replace", false, "overwrite a stored image of that name")
	}
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	for _, n := range strings.Split(nodes, ",") {
		if n = strings.TrimSpace(n); n != "" {
			job.Nodes = append(job.Nodes, n)
		}
	}
	if len(job.Nodes) == 0 || job.Image == "" {
		return errUsage
	}

	// The board learns each node's HRN from its first step: the names
	// given may be host names.
	b := newBoard(k.errOut)
	job.Progress = b.update
	results, err := imaging.Run(ctx, client(), job)
	if err != nil {
		return err
	}
	k.summary(op, results)
	if ctx.Err() != nil {
		fmt.Fprintf(k.errOut, "nbctl: %s interrupted: PXE links cleared (earlier ones put back as the summary says); a %s already running on a node goes on there (nbctl rc status NODE)\n",
			op, map[imaging.Op]string{imaging.Load: "LOAD_IMAGE", imaging.Save: "SAVE_IMAGE"}[op])
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d nodes failed", op, failed, len(results))
	}
	return nil
}

// summary prints one row per node, then each failure in full.
func (k *cli) summary(op imaging.Op, results []imaging.Result) {
	var rows [][]string
	var errs []string
	for _, r := range results {
		outcome := map[imaging.Op]string{imaging.Load: "loaded", imaging.Save: "saved"}[op]
		if r.Err != nil {
			outcome = "FAILED (" + string(r.Phase) + ")"
			errs = append(errs, r.Err.Error())
		}
		row := []string{r.Node, outcome, r.Took.Round(100 * time.Millisecond).String(), "-", "-", "-"}
		if op == imaging.Load {
			row = append(row, "-")
		}
		if r.Bytes > 0 || r.Stored > 0 || r.Skipped > 0 {
			row = append(row[:3], r.Disk, bytesize(r.Bytes))
			if op == imaging.Load {
				row = append(row, bytesize(r.Skipped))
			}
			row = append(row, bytesize(r.Stored))
		}
		// A load's rate counts the disk it settled: written, or found right.
		rows = append(rows, append(row, fmt.Sprint(r.Resets), rate(r.Bytes+r.Skipped, r.Transfer)))
	}
	header := "NODE\tOUTCOME\tTIME\tDISK\tDISK_BYTES\tIMAGE_BYTES\tRESETS\tDISK_RATE"
	if op == imaging.Load {
		header = "NODE\tOUTCOME\tTIME\tDISK\tWRITTEN\tSKIPPED\tFETCHED\tRESETS\tDISK_RATE"
	}
	k.table(header, rows)
	for _, e := range errs {
		fmt.Fprintln(k.out, "  "+e)
	}
	// The links the nodes had before (an EC's), which the job replaced.
	for _, r := range results {
		if r.Before != nil {
			fmt.Fprintf(k.out, "  %s: earlier %s\n", r.Node, r.Restore)
		}
	}
}

// board shows each node's phase and progress on stderr: one line per node
// redrawn in place on a terminal, a line per step otherwise (a log, CI).
type board struct {
	w     io.Writer
	tty   bool
	nodes []string
	lines map[string]string
	since map[string]time.Time // when the node's transfer started
	last  map[string]string    // the last step logged, without a terminal
	drawn int
}

func newBoard(w io.Writer) *board {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &board{w: w, tty: tty, lines: map[string]string{}, since: map[string]time.Time{}, last: map[string]string{}}
}

func (b *board) update(u imaging.Update) {
	if _, known := b.lines[u.Node]; !known {
		b.nodes = append(b.nodes, u.Node)
	}
	line := string(u.Phase)
	transfer := u.Phase == imaging.PhaseLoad || u.Phase == imaging.PhaseSave
	if transfer && b.since[u.Node].IsZero() {
		b.since[u.Node] = time.Now()
	}
	if transfer && u.Progress.Total > 0 {
		line = barText(string(u.Phase), u.Progress, time.Since(b.since[u.Node]))
	}
	if u.Note != "" {
		line += ": " + u.Note
	}
	b.lines[u.Node] = line
	if b.tty {
		b.redraw()
		return
	}
	// Without a terminal: each phase and note once, progress by quarters.
	step := string(u.Phase) + u.Note
	if u.Progress.Total > 0 {
		step += fmt.Sprint(u.Progress.Done * 4 / u.Progress.Total)
	}
	if b.last[u.Node] != step {
		b.last[u.Node] = step
		fmt.Fprintf(b.w, "%s  %s\n", u.Node, line)
	}
}

func (b *board) redraw() {
	if b.drawn > 0 {
		fmt.Fprintf(b.w, "\033[%dA", b.drawn)
	}
	width := 0
	for _, n := range b.nodes {
		width = max(width, len(n))
	}
	for _, n := range b.nodes {
		fmt.Fprintf(b.w, "\r\033[K%-*s  %s\n", width, n, b.lines[n])
	}
	b.drawn = len(b.nodes)
}
