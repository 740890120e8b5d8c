package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/internal/textclip"
	"github.com/orbit-lab/netboot/rc/proto"
)

// The Resource Controller commands (rc status, rc exec, disk ...: see the
// table in commands.go). exec, disk load and disk save queue a command,
// follow it until it is over (output and a progress bar on stderr as it
// goes) and fail unless it succeeded.

// pollEvery is how often a followed command is read.
const pollEvery = 250 * time.Millisecond

func (k *cli) rcStatus(ctx context.Context, args []string) error {
	fs, client := k.nodeFlags("rc status")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0, 1); err != nil {
		return err
	}
	switch {
	case fs.NArg() == 0 && given(fs, "domain"):
		return fmt.Errorf("--domain names the testbed of NODE: %w", errUsage)
	case fs.NArg() == 0:
		return listTable(ctx, k, k.c.RCs, *asJSON, "NODE\tSTATE\tIMAGE\tHOSTNAME\tADDRESSES\tFIRMWARE\tENROLLED\tLAST_SEEN", func(s proto.RCStatus) []string {
			return []string{s.HRN, onlineWord(s), s.Image, s.Hostname, strings.Join(s.Addresses, ","),
				firmwareWord(s), clock(s.EnrolledAt), clock(s.LastSeen)}
		})
	}
	c := client()
	s, err := c.RCStatus(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	// By the HRN the appliance found: the name may be a host name.
	cmds, err := c.NodeCommands(ctx, s.HRN, 10)
	if err != nil {
		return err
	}
	if *asJSON {
		return k.printJSON(map[string]any{"rc": s, "commands": cmds})
	}
	if !s.Enrolled {
		fmt.Fprintf(k.out, "%s: no RC enrolled\n", s.HRN)
	} else {
		fmt.Fprintf(k.out, "%s: %s, enrollment %d at %s, last seen %s\n", s.HRN, onlineWord(s), s.Enrollment, clock(s.EnrolledAt), clock(s.LastSeen))
		rows := [][]string{
			{"image", s.Image}, {"hostname", s.Hostname}, {"kernel", s.Kernel}, {"firmware", firmwareWord(s)}, {"rc", s.Version},
			{"macs", strings.Join(s.MACs, " ")}, {"addresses", strings.Join(s.Addresses, " ")},
		}
		for _, d := range s.Disks {
			rows = append(rows, []string{"disk", strings.TrimSpace(fmt.Sprintf("%s %s %s", d.Path, bytesize(d.Size), d.Model))})
		}
		w := tabwriter.NewWriter(k.out, 0, 4, 2, ' ', 0)
		for _, r := range rows {
			fmt.Fprintf(w, "  %s\t%s\n", r[0], r[1])
		}
		w.Flush()
	}
	if len(cmds) > 0 {
		fmt.Fprintln(k.out)
		var rows [][]string
		for _, c := range cmds {
			rows = append(rows, []string{fmt.Sprint(c.ID), c.Type, c.State, c.Reply, exitWord(c.ExitCode), clock(&c.CreatedAt), commandDetail(c)})
		}
		k.table("ID\tTYPE\tSTATE\tREPLY\tEXIT\tQUEUED\tDETAIL", rows)
	}
	return nil
}

// firmwareWord is how the node booted: bios, uefi, or uefi+sb with Secure
// Boot on; "uefi?" when its RC could not read the SecureBoot variable, "-"
// when its RC did not say (an older RC).
func firmwareWord(s proto.RCStatus) string {
	switch {
	case s.Firmware == "":
		return "-"
	case s.Firmware != proto.FirmwareUEFI:
		return s.Firmware
	case s.SecureBoot == nil:
		return "uefi?"
	case *s.SecureBoot:
		return "uefi+sb"
	}
	return "uefi"
}

func onlineWord(s proto.RCStatus) string {
	switch {
	case !s.Enrolled:
		return "not enrolled"
	case s.State != "":
		return s.State
	case s.Online: // an appliance from before RCStatus.State
		return proto.RCOnline
	}
	return proto.RCOffline
}

func clock(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	l := t.Local()
	if time.Since(l) > 20*time.Hour {
		return l.Format("2006-01-02 15:04:05")
	}
	return l.Format(time.TimeOnly)
}

func exitWord(code *int) string {
	if code == nil {
		return "-"
	}
	return fmt.Sprint(*code)
}

func commandDetail(c proto.CommandStatus) string {
	var d string
	switch c.Type {
	case proto.Execute:
		d = c.Command
		if d == "" {
			d = strings.Join(c.Args, " ")
		}
	case proto.LoadImage, proto.SaveImage:
		d = c.Image + " " + c.Disk
		if c.Progress.Total > 0 && !proto.Terminal(c.State) {
			d += fmt.Sprintf(" %d%%", c.Progress.Done*100/c.Progress.Total)
		}
	default:
		d = c.Image
	}
	if c.Error != "" {
		d += ": " + c.Error
	}
	return strings.TrimSpace(textclip.Line(d, 100))
}

func (k *cli) rcExec(ctx context.Context, args []string) error {
	fs, client := k.nodeFlags("rc exec")
	timeout := fs.Duration("timeout", 0, "kill the command after this long (default: never)")
	shell := fs.Bool("shell", false, "run the words as one line by /bin/sh -c (only on images that have a shell)")
	if err := parseFlags(fs, args, 0, -1); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) >= 2 && rest[1] == "--" {
		rest = append(rest[:1:1], rest[2:]...)
	}
	if len(rest) < 2 {
		return errUsage
	}
	node := rest[0]
	// The default RAM image has no shell: the program runs as given.
	req := proto.CommandRequest{Type: proto.Execute, Args: rest[1:]}
	if *shell {
		req = proto.CommandRequest{Type: proto.Execute, Command: strings.Join(rest[1:], " ")}
	}
	if *timeout > 0 {
		req.Timeout = timeout.String()
	}
	st, err := client().SendCommand(ctx, node, req)
	if err != nil {
		return err
	}
	var outN, errN int
	var writeErr error // the first failed write, said once the command ends
	show := func(w io.Writer, s string) {
		if _, err := io.WriteString(w, s); err != nil && writeErr == nil {
			writeErr = fmt.Errorf("%s: printing the output: %w", node, err)
		}
	}
	st, err = k.follow(ctx, node, st, func(s proto.CommandStatus) {
		// Output is printed as it comes.
		if len(s.Stdout) > outN {
			show(k.out, s.Stdout[outN:])
			outN = len(s.Stdout)
		}
		if len(s.Stderr) > errN {
			show(k.errOut, s.Stderr[errN:])
			errN = len(s.Stderr)
		}
	})
	if err != nil {
		return err
	}
	if writeErr != nil {
		return writeErr
	}
	if st.Truncated {
		fmt.Fprintf(k.errOut, "nbctl: %s: output truncated: the appliance keeps only the first part of each stream\n", node)
	}
	switch {
	case st.State != proto.StateDone:
		return fmt.Errorf("%s: command %d %s: %s", node, st.ID, st.State, st.Error)
	case st.ExitCode != nil && *st.ExitCode != 0:
		return fmt.Errorf("%s: command %d exited with code %d", node, st.ID, *st.ExitCode)
	}
	return nil
}

// follow waits for a queued command to end, calling seen with each state,
// and says so if it stays queued (the node's RC is not polling).
func (k *cli) follow(ctx context.Context, node string, st proto.CommandStatus, seen func(proto.CommandStatus)) (proto.CommandStatus, error) {
	queuedSince := time.Now()
	told := false
	last, err := k.c.WaitCommand(ctx, st.ID, pollEvery, func(s proto.CommandStatus) {
		if s.State == proto.StateQueued && !told && time.Since(queuedSince) > 5*time.Second {
			fmt.Fprintf(k.errOut, "nbctl: %s: command %d still queued: is the node's RC online? (nbctl rc status %s)\n", node, s.ID, node)
			told = true
		}
		seen(s)
	})
	if err != nil && ctx.Err() != nil {
		fmt.Fprintf(k.errOut, "\nnbctl: stopped following command %d; it goes on on the node (GET /api/v1/commands/%d)\n", st.ID, st.ID)
	}
	return last, err
}

func (k *cli) diskLoad(ctx context.Context, args []string) error {
	return k.diskTransfer(ctx, "load", proto.LoadImage, args)
}

func (k *cli) diskSave(ctx context.Context, args []string) error {
	return k.diskTransfer(ctx, "save", proto.SaveImage, args)
}

func (k *cli) diskTransfer(ctx context.Context, verb, typ string, args []string) error {
	fs, client := k.nodeFlags("disk " + verb)
	disk := fs.String("disk", "", "the node's disk (default: its inventory disk)")
	if err := parseFlags(fs, args, 2, 2); err != nil {
		return err
	}
	node, image := fs.Arg(0), fs.Arg(1)
	st, err := client().SendCommand(ctx, node, proto.CommandRequest{Type: typ, Image: image, Disk: *disk})
	if err != nil {
		return err
	}
	bar := &progressBar{w: k.errOut, label: verb}
	st, err = k.follow(ctx, node, st, func(s proto.CommandStatus) {
		if s.State == proto.StateRunning || s.State == proto.StateDone {
			bar.show(s.Progress)
		}
	})
	bar.end()
	if err != nil {
		return err
	}
	if st.State != proto.StateDone {
		return fmt.Errorf("%s: disk %s of %s %s: %s", node, verb, image, st.State, st.Error)
	}
	took := time.Duration(0)
	if st.StartedAt != nil && st.FinishedAt != nil {
		took = st.FinishedAt.Sub(*st.StartedAt)
	}
	p := st.Progress
	if typ == proto.LoadImage {
		fetched := p.Fetched
		if fetched == 0 && p.Skipped == 0 {
			fetched = p.Done // an RC that does not count it
		}
		fmt.Fprintf(k.out, "%s: loaded %s onto %s: %s written, %s skipped (already there), %s fetched in %s (%s), sha256 %s verified\n",
			node, image, st.Disk, bytesize(p.Written), bytesize(p.Skipped), bytesize(fetched), took.Round(100*time.Millisecond),
			rate(p.Written+p.Skipped, took), st.SHA256)
	} else {
		fmt.Fprintf(k.out, "%s: saved %s as %s: %s read, %s stored in %s (%s), sha256 %s\n",
			node, st.Disk, image, bytesize(p.Done), bytesize(p.Written), took.Round(100*time.Millisecond), rate(p.Done, took), st.SHA256)
	}
	return nil
}

// diskGet downloads a disk image into FILE, written under a temporary name
// and renamed only once it is whole and its checksum matches: the file's
// SHA-256, or of a chunked image, its manifest's digest, every chunk
// checked against its hash.
func (k *cli) diskGet(ctx context.Context, args []string) error {
	if len(args) != 2 {
		return errUsage
	}
	name, file := args[0], args[1]
	w := &imageSum{h: digest.New()}
	got := ""
	err := atomicfile.WriteOSFile(file, 0o600, func(f *os.File) error {
		sum, err := k.c.GetDiskImage(ctx, name, io.MultiWriter(f, w))
		if err != nil {
			return err
		}
		got = w.h.Hex()
		if w.chunked {
			n, _ := f.Seek(0, io.SeekCurrent)
			if _, got, err = chunkimg.Check(f, n); err != nil {
				return fmt.Errorf("disk get %s: %w", name, err)
			}
		}
		if sum != "" && sum != got {
			return fmt.Errorf("disk get %s: checksum mismatch: the appliance says %s, got %s", name, sum, got)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(k.out, "fetched %s into %s, sha256 %s\n", name, file, got)
	return nil
}

// fileHead is the first bytes of f, which tell its format (fewer if it is
// shorter; a read error shows when it is read).
func fileHead(f io.ReaderAt) []byte {
	head := make([]byte, 8)
	n, _ := f.ReadAt(head, 0)
	return head[:n]
}

// imageSum sums a disk image as it is written: its bytes, unless its head
// shows a chunked image, whose checksum is its manifest's digest (which
// chunkimg.Check reads back, checking every chunk): hashing all of it as
// well would only cost time.
type imageSum struct {
	h       *digest.Hash
	head    []byte
	chunked bool
}

func (s *imageSum) Write(p []byte) (int, error) {
	if want := len(proto.ChunkedMagic); len(s.head) < want {
		s.head = append(s.head, p[:min(len(p), want-len(s.head))]...)
		s.chunked = proto.FormatOf(s.head) == proto.FormatChunked
	}
	if !s.chunked {
		return s.h.Write(p)
	}
	return len(p), nil
}

func (k *cli) diskList(ctx context.Context) error {
	// SIZE is the disk's, STORED the file's; a single stream's disk size
	// and chunks are unknown ("-") without decompressing it.
	return listTable(ctx, k, k.c.DiskImages, false, "NAME\tFORMAT\tSIZE\tSTORED\tCHUNKS\tZERO\tMODIFIED\tSHA256", func(i proto.DiskImage) []string {
		size, chunks := "-", "-"
		if i.Format == proto.FormatChunked {
			size, chunks = bytesize(i.DiskSize), fmt.Sprint(i.Chunks)
		}
		return []string{i.Name, i.Format, size, bytesize(i.Size), chunks, zeroShare(i), i.Modified.Local().Format("2006-01-02 15:04"), i.SHA256}
	})
}

// progressBar draws one line, redrawn in place with \r.
type progressBar struct {
	w     io.Writer
	label string
	start time.Time
	drawn bool
}

func (b *progressBar) show(p proto.Progress) {
	if b.start.IsZero() {
		b.start = time.Now()
	}
	fmt.Fprintf(b.w, "\r%-130s", barText(b.label, p, time.Since(b.start)))
	b.drawn = true
}

// barText is a progress bar: label [####------] 40% done/total rate.
func barText(label string, p proto.Progress, took time.Duration) string {
	const width = 30
	pct := 0.0
	if p.Total > 0 {
		pct = min(float64(p.Done)/float64(p.Total), 1)
	}
	fill := int(pct * width)
	s := fmt.Sprintf("%s [%s%s] %3.0f%% %s/%s %s", label, strings.Repeat("#", fill), strings.Repeat("-", width-fill),
		pct*100, bytesize(p.Done), bytesize(p.Total), rate(p.Done, took))
	if p.Skipped > 0 || p.Fetched > 0 { // a load: what became of the disk
		s += fmt.Sprintf(" (written %s, skipped %s, fetched %s)", bytesize(p.Written), bytesize(p.Skipped), bytesize(p.Fetched))
	}
	return s
}

func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

func bytesize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return bytesize(int64(float64(n)/d.Seconds())) + "/s"
}
