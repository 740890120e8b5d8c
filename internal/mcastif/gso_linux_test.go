package mcastif

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"
)

// TestWriteSegments: a run of datagrams sent in one call arrives as those
// datagrams, the short last one too; a run the kernel cannot take is
// refused whole, before anything is sent.
func TestWriteSegments(t *testing.T) {
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	to := rx.LocalAddr().(*net.UDPAddr)

	for _, tc := range []struct {
		name    string
		seg     int
		sizes   []int // of the datagrams in the run
		refused bool
	}{
		{name: "three full", seg: 1000, sizes: []int{1000, 1000, 1000}},
		{name: "short last", seg: 1400, sizes: []int{1400, 1400, 1400, 77}},
		{name: "one", seg: 1400, sizes: []int{1400}},
		{name: "too many segments", seg: 100, sizes: repeat(100, MaxSegments+1), refused: true},
		{name: "over 64 KiB", seg: 1472, sizes: repeat(1472, 45), refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var run []byte
			var want [][]byte
			for i, n := range tc.sizes {
				d := bytes.Repeat([]byte{byte(i + 1)}, n)
				want = append(want, d)
				run = append(run, d...)
			}
			err := WriteSegments(tx, run, tc.seg, to)
			if tc.refused {
				if !errors.Is(err, ErrNoSegmentation) {
					t.Fatalf("WriteSegments = %v, want ErrNoSegmentation", err)
				}
				want = nil
			} else if err != nil {
				t.Fatalf("WriteSegments = %v", err)
			}
			buf := make([]byte, 1<<16)
			for i := 0; ; i++ {
				if err := rx.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
					t.Fatal(err)
				}
				n, err := rx.Read(buf)
				if err != nil {
					if i != len(want) {
						t.Fatalf("%d datagrams arrived, want %d", i, len(want))
					}
					return
				}
				if i >= len(want) || !bytes.Equal(buf[:n], want[i]) {
					t.Fatalf("datagram %d: %d bytes, want the run's %d datagrams as sent", i, n, len(want))
				}
			}
		})
	}
}

func repeat(n, times int) []int {
	out := make([]int, times)
	for i := range out {
		out[i] = n
	}
	return out
}
