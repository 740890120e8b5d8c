package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/tftpd"
)

// startTestServer starts netbootd's TFTP server on loopback, serving dir.
func startTestServer(t *testing.T, dir string) string {
	t.Helper()
	s, err := tftpd.New(tftpd.Config{Listen: "127.0.0.1:0", Root: dir}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Serve(t, "Serve", 30*time.Second, s.Serve)
	<-s.Ready()
	if s.Addr() == nil {
		t.Fatal("server did not bind")
	}
	return s.Addr().String()
}

func TestEpollClientFetches(t *testing.T) {
	dir := t.TempDir()
	// Sizes around the block boundary: an exact multiple of blksize ends
	// with an empty DATA block.
	var files []file
	var want int64
	for i, size := range []int64{0, 1, 1468, 1469, 3 * 1468, 100000} {
		f, err := makeFile(dir, "f"+string(rune('a'+i)), size, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		want += size
	}
	addr := startTestServer(t, dir)
	// Two event loops for three clients: one loop gets two.
	o := options{blksize: 1468, pktTime: 2 * time.Second, clientThreads: 2}
	const clients = 3
	n, errs := runEpollClients(context.Background(), addr, clients, files, o)
	if len(errs) > 0 {
		t.Fatalf("failures: %v", errs)
	}
	if n != clients*want {
		t.Errorf("got %d bytes, want %d", n, clients*want)
	}
}

func TestEpollClientReportsServerError(t *testing.T) {
	dir := t.TempDir()
	addr := startTestServer(t, dir)
	o := options{blksize: 1468, pktTime: 2 * time.Second}
	_, errs := runEpollClients(context.Background(), addr, 1, []file{{name: "missing"}}, o)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "server error code=1") {
		t.Fatalf("errors %v, want one server error code=1", errs)
	}
}

func TestEpollClientTimesOut(t *testing.T) {
	// Nobody answers on this port: the request is sent 1+retries times,
	// then the transfer fails.
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	o := options{blksize: 1468, pktTime: 20 * time.Millisecond}
	_, errs := runEpollClients(context.Background(), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 1, []file{{name: "x"}}, o)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "timeout") {
		t.Fatalf("errors %v, want one timeout", errs)
	}
}
