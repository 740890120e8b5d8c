// Command httpboot compares, side by side on loopback, one client
// fetching one boot file (default 30 MiB, the size of a UEFI RAM-disk
// image or a kernel plus initramfs) from:
//
//	netbootd-http  netbootd's http_boot (GET, sendfile)
//	netbootd-tftp  netbootd's TFTP server (lock-step, blksize 1468)
//	tftpd-hpa      tftpd-hpa (lock-step, blksize 1468), if installed
//
// The TFTP client is pin/tftp's, the same for both TFTP servers; the HTTP
// client is net/http's. Every download is checked against the file's
// CRC. The servers take turns round by round so that a noisy moment of a
// shared machine does not fall on one of them only; the table gives the
// median round, with min and max.
//
// It builds nothing: give it a netbootd binary.
//
//	go build -o bin/ ./cmd/netbootd && go run ./bench/httpboot --netbootd bin/netbootd
//	go run ./bench/httpboot --netbootd bin/netbootd -size 8MiB -rounds 9
//
// All traffic goes to 127.0.0.1; the run is bounded by -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/pin/tftp/v3"

	"github.com/orbit-lab/netboot/bench/internal/benchproc"
)

type options struct {
	netbootd  string
	size      int64
	rounds    int
	blksize   int
	tftpdPath string
	timeout   time.Duration
}

func main() {
	var o options
	var size string
	flag.StringVar(&o.netbootd, "netbootd", "", "path of the netbootd binary to run (required; go build -o bin/ ./cmd/netbootd)")
	flag.StringVar(&size, "size", "30MiB", "size of the file fetched (bytes, or N MiB)")
	flag.IntVar(&o.rounds, "rounds", 5, "fetches per server")
	flag.IntVar(&o.blksize, "blksize", 1468, "TFTP block size the client asks for (UEFI's)")
	flag.StringVar(&o.tftpdPath, "in.tftpd", "in.tftpd", "tftpd-hpa server binary (skipped if not found)")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	flag.Parse()
	n, err := parseSize(size)
	if err != nil || o.netbootd == "" || o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "usage: httpboot --netbootd PATH [-size 30MiB] [-rounds 5] [-blksize 1468] [-in.tftpd PATH]")
		os.Exit(2)
	}
	o.size = n
	benchproc.Run(o.timeout, func(ctx context.Context) error { return run(ctx, o, os.Stdout) })
}

func parseSize(s string) (int64, error) {
	if m, ok := strings.CutSuffix(s, "MiB"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		return n << 20, err
	}
	return strconv.ParseInt(s, 10, 64)
}

// fetcher is one server and how to fetch a file from it.
type fetcher struct {
	name  string
	fetch func(ctx context.Context, name string, w io.Writer) (int64, error)
}

func run(ctx context.Context, o options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "httpboot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // tftpd-hpa -s serves world-readable trees only
		return err
	}
	const file = "orbit.img"
	crc, err := makeFile(filepath.Join(root, file), o.size)
	if err != nil {
		return err
	}

	nb, err := startNetbootd(ctx, o.netbootd, dir, root)
	if err != nil {
		return err
	}
	defer func() {
		if err := nb.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "netbootd:", err)
		}
	}()
	fetchers := []fetcher{
		{"netbootd-http", httpFetch("http://" + nb.http + "/boot/")},
		{"netbootd-tftp", tftpFetch(nb.tftp, o.blksize)},
	}
	if path, err := exec.LookPath(o.tftpdPath); err == nil {
		hpa, err := startTFTPDHPA(ctx, path, root)
		if err != nil {
			return err
		}
		defer hpa.stop()
		fetchers = append(fetchers, fetcher{"tftpd-hpa", tftpFetch(hpa.addr, o.blksize)})
	} else {
		fmt.Fprintf(os.Stderr, "tftpd-hpa: %v: skipped (apt-get install tftpd-hpa)\n", err)
	}

	took := make([][]time.Duration, len(fetchers))
	for round := range o.rounds {
		for i, f := range fetchers {
			h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
			start := time.Now()
			n, err := f.fetch(ctx, file, h)
			d := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", f.name, round+1, err)
			}
			if n != o.size || h.Sum32() != crc {
				return fmt.Errorf("%s round %d: got %d bytes, crc %08x; want %d, %08x", f.name, round+1, n, h.Sum32(), o.size, crc)
			}
			fmt.Fprintf(os.Stderr, "%-14s round %d: %v, %.1f MB/s\n", f.name, round+1, d.Round(time.Millisecond), mbps(o.size, d))
			took[i] = append(took[i], d)
		}
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "one client, %d MiB file, %d rounds\tmedian s\tMB/s\tmin MB/s\tmax MB/s\tvs netbootd-tftp\t\n", o.size>>20, o.rounds)
	med := make([]time.Duration, len(fetchers))
	for i := range fetchers {
		slices.Sort(took[i])
		med[i] = took[i][len(took[i])/2]
	}
	for i, f := range fetchers {
		fmt.Fprintf(tw, "%s\t%.3f\t%.1f\t%.1f\t%.1f\t%.1fx\t\n", f.name, med[i].Seconds(), mbps(o.size, med[i]),
			mbps(o.size, took[i][len(took[i])-1]), mbps(o.size, took[i][0]), med[1].Seconds()/med[i].Seconds())
	}
	return tw.Flush()
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func httpFetch(base string) func(context.Context, string, io.Writer) (int64, error) {
	// A fresh connection for each fetch, as a booting node has.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	return func(ctx context.Context, name string, w io.Writer) (int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+name, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %s", name, resp.Status)
		}
		return io.Copy(w, resp.Body)
	}
}

func tftpFetch(addr string, blksize int) func(context.Context, string, io.Writer) (int64, error) {
	return func(_ context.Context, name string, w io.Writer) (int64, error) {
		c, err := tftp.NewClient(addr)
		if err != nil {
			return 0, err
		}
		c.SetBlockSize(blksize)
		c.SetTimeout(2 * time.Second)
		wt, err := c.Receive(name, "octet")
		if err != nil {
			return 0, err
		}
		return wt.WriteTo(w)
	}
}

// makeFile writes size random bytes and returns their CRC.
func makeFile(path string, size int64) (uint32, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return 0, err
	}
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	_, err = io.CopyN(w, rand.NewChaCha8([32]byte{14}), size)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return h.Sum32(), err
}

type netbootd struct {
	http, tftp string
	stop       func() error
}

// startNetbootd runs the binary with HTTP and TFTP on loopback ports of
// its choosing and reads them from its ready file.
func startNetbootd(ctx context.Context, bin, dir, root string) (*netbootd, error) {
	cfg := filepath.Join(dir, "netbootd.yaml")
	ready := filepath.Join(dir, "ready.json")
	yaml := fmt.Sprintf("state_dir: %s\ntftp_root: %s\nhttp: { listen: \"127.0.0.1:0\" }\ntftp: { listen: \"127.0.0.1:0\" }\ninventory: { seed: \"\" }\n",
		filepath.Join(dir, "state"), root)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	// Warnings only: a line per fetch would measure the log.
	cmd := exec.CommandContext(ctx, bin, "--config", cfg, "--ready-file", ready, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			return errors.Join(errors.New("did not stop within 10s of SIGTERM; killed"), <-exited)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var addrs struct{ HTTP, TFTP string }
		if data, err := os.ReadFile(ready); err == nil {
			if err := json.Unmarshal(data, &addrs); err != nil {
				return nil, errors.Join(fmt.Errorf("ready file %q: %w", data, err), stop())
			}
			return &netbootd{http: addrs.HTTP, tftp: addrs.TFTP, stop: stop}, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("netbootd exited at start: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(errors.New("netbootd did not serve within 20s"), stop())
		}
	}
}

type tftpdHPA struct {
	addr string
	stop func()
}

func startTFTPDHPA(ctx context.Context, path, root string) (*tftpdHPA, error) {
	// A free port: bind one, close it, give it to in.tftpd (a race with
	// another program is possible and would show as a failed start).
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	// -L: foreground; -s: chroot to root, as deployed; -u root: the
	// default user "nobody" may not reach a temporary directory.
	cmd := exec.CommandContext(ctx, path, "-L", "-s", root, "-a", addr, "-u", "root")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait() // signalled: its exit error says nothing
	}
	// Serving once a fetch of a missing file is answered, with "not found".
	c, err := tftp.NewClient(addr)
	if err != nil {
		stop()
		return nil, err
	}
	c.SetTimeout(200 * time.Millisecond)
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := c.Receive("no-such-file", "octet")
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "not found") {
			return &tftpdHPA{addr: addr, stop: stop}, nil
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("tftpd-hpa on %s did not answer within 10s: %w", addr, err)
		}
	}
}
