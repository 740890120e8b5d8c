package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/am/rcbroker/rcbrokertest"
	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/digest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc"
	"github.com/orbit-lab/netboot/rc/proto"
)

// The rc and disk commands against an in-process broker and RC (the
// dispatch in main.go is not needed to call them).
// runRC runs an in-process RC until stop or the end of the test; Run must
// then end without an error.
func runRC(t *testing.T, cfg rc.Config) (stop func()) {
	return testenv.Serve(t, "rc.Run", 30*time.Second, func(ctx context.Context) error { return rc.Run(ctx, cfg) }).Stop
}

func TestRCAndDiskCommands(t *testing.T) {
	a, err := rcbrokertest.Start(t.TempDir(), rcbrokertest.Options{Inventory: `testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8.orbit-lab.org, hostname: node1-1, control_ip: 127.0.0.11, control_mac: "00:03:1d:0c:01:01" }
`})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	dir := t.TempDir()
	ctx := context.Background()
	// A UEFI node with Secure Boot on, as efivarfs shows it.
	testenv.WriteFile(t, filepath.Join(dir, "efi", "efivars", "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"), "\x06\x00\x00\x00\x01")
	stopRC := runRC(t, rc.Config{AM: a.URL, MACs: []string{"00:03:1d:0c:01:01"}, Hostname: "node1-1", ImageName: "orbit-2.0.0", HTTP: apptest.ClientFrom("127.0.0.11"),
		ImageFile: filepath.Join(dir, "none"), DiskAllow: []string{filepath.Join(dir, "disk*")}, PollWait: 2 * time.Second,
		EFIDir: filepath.Join(dir, "efi")})
	defer stopRC()

	var out, errs bytes.Buffer
	k := &cli{c: amclient.New(a.URL).WithToken(rcbrokertest.OperatorToken), out: &out, errOut: &errs}
	node := "node1-1.sb8.orbit-lab.org"
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := k.c.RCStatus(context.Background(), node)
		if err == nil && s.Enrolled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not enrolled: %+v %v", s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	if err := k.rcStatus(ctx, nil); err != nil || !apptest.HasLine(out.String(), node, "online", "uefi+sb") || !strings.Contains(out.String(), "FIRMWARE") {
		t.Errorf("rc status: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := k.rcStatus(ctx, []string{node}); err != nil || !apptest.HasLine(out.String(), "firmware", "uefi+sb") {
		t.Errorf("rc status %s: %v\n%s", node, err, out.String())
	}
	out.Reset()

	err = k.rcExec(ctx, []string{"--shell", node, "--", "echo", "hi;", "echo", "oops", ">&2;", "exit", "3"})
	if err == nil || !strings.Contains(err.Error(), "exited with code 3") || out.String() != "hi\n" || !strings.Contains(errs.String(), "oops\n") {
		t.Errorf("rc exec: %v, stdout %q, stderr %q", err, out.String(), errs.String())
	}
	out.Reset()
	if err := k.rcExec(ctx, []string{node, "--", "true"}); err != nil {
		t.Errorf("rc exec true: %v", err)
	}

	raw := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	img := zstdtest.Compress(t, raw)
	h := sha256.Sum256(img)
	imgFile := filepath.Join(dir, "base.zst")
	testenv.WriteFile(t, imgFile, img)
	if err := k.diskPut(ctx, []string{"--as-is", "base", imgFile}); err != nil || !strings.Contains(out.String(), "stored base: zstd") || !strings.Contains(out.String(), hex.EncodeToString(h[:])) {
		t.Fatalf("disk put: %v, said %q", err, out.String())
	}
	plainFile := filepath.Join(dir, "plain.img")
	testenv.WriteFile(t, plainFile, raw[:4096])
	if err := k.diskPut(ctx, []string{"--as-is", "plain", plainFile}); err == nil || !strings.Contains(err.Error(), "gzip or zstd stream") {
		t.Errorf("disk put --as-is of an uncompressed file: %v", err)
	}
	disk := filepath.Join(dir, "disk0")
	testenv.WriteFile(t, disk, "")
	out.Reset()
	errs.Reset()
	if err := k.diskLoad(ctx, []string{"--disk", disk, node, "base"}); err != nil {
		t.Fatalf("disk load: %v\n%s", err, errs.String())
	}
	if got, _ := os.ReadFile(disk); !bytes.Equal(got, raw) {
		t.Errorf("disk load: the disk differs from the image")
	}
	if !strings.Contains(out.String(), "loaded base onto "+disk+": 4.0 MiB written") || !strings.Contains(out.String(), "verified") {
		t.Errorf("disk load said %q", out.String())
	}
	out.Reset()
	if err := k.diskSave(ctx, []string{"--disk", disk, node, "copy"}); err != nil {
		t.Fatalf("disk save: %v", err)
	}
	if !strings.Contains(out.String(), "saved "+disk+" as copy: 4.0 MiB read") {
		t.Errorf("disk save said %q", out.String())
	}
	copyFile := filepath.Join(dir, "copy.nbi")
	if err := k.diskGet(ctx, []string{"copy", copyFile}); err != nil {
		t.Fatal(err)
	}
	if back := zstdtest.Disk(t, []byte(testenv.ReadFile(t, copyFile))); !bytes.Equal(back, raw) {
		t.Errorf("disk save: the stored image differs from the disk")
	}
	if err := k.diskGet(ctx, []string{"nosuch", filepath.Join(dir, "nosuch.zst")}); err == nil {
		t.Errorf("disk get of a missing image: no error")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*nosuch*")); len(left) != 0 {
		t.Errorf("disk get of a missing image left %v", left)
	}
	if err := k.diskLoad(ctx, []string{"--disk", "/etc/hostname", node, "base"}); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Errorf("disk load onto /etc/hostname: %v", err)
	}

	out.Reset()
	if err := k.rcStatus(ctx, nil); err != nil || !strings.Contains(out.String(), node) || !strings.Contains(out.String(), "online") {
		t.Errorf("rc status: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := k.rcStatus(ctx, []string{node}); err != nil || !strings.Contains(out.String(), "LOAD_IMAGE") || !strings.Contains(out.String(), "orbit-2.0.0") {
		t.Errorf("rc status NODE: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := k.diskList(ctx); err != nil || !apptest.HasLine(out.String(), "copy", "chunked", "4.0 MiB", " 4 ", "0%") || !apptest.HasLine(out.String(), "base", "zstd", " - ") {
		t.Errorf("disk list: %v\n%s", err, out.String())
	}
}

func TestImageSum(t *testing.T) {
	zstd := append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte("z"), 100)...)
	chunked := append([]byte(proto.ChunkedMagic), bytes.Repeat([]byte("c"), 100)...)
	for _, tc := range []struct {
		name    string
		data    []byte
		split   []int // write sizes, the rest in one write
		chunked bool
	}{
		{"zstd in one write", zstd, nil, false},
		{"zstd byte by byte", zstd, []int{1, 1, 1, 1, 1, 1, 1, 1, 1}, false},
		{"chunked in one write", chunked, nil, true},
		{"chunked head split", chunked, []int{3, 4, 2}, true},
		{"chunked magic cut short", []byte(proto.ChunkedMagic[:5]), nil, false},
		{"empty", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &imageSum{h: digest.New()}
			rest := tc.data
			for _, n := range tc.split {
				if _, err := w.Write(rest[:n]); err != nil {
					t.Fatal(err)
				}
				rest = rest[n:]
			}
			if n, err := w.Write(rest); err != nil || n != len(rest) {
				t.Fatalf("write: %d, %v", n, err)
			}
			if w.chunked != tc.chunked {
				t.Errorf("chunked %v, want %v", w.chunked, tc.chunked)
			}
			if !tc.chunked && w.h.Hex() != digest.Bytes(tc.data) {
				t.Errorf("sum %s, want the bytes' %s", w.h.Hex(), digest.Bytes(tc.data))
			}
		})
	}
}
