package tftpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

func TestSnapshotReader(t *testing.T) {
	data := randomBytes(7, 200_000) // a few refills of a 64 KiB buffer
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		file    []byte // what the descriptor reads now
		size    int64  // what fstat said at open
		want    []byte
		wantErr error
	}{
		{"whole file", context.Background(), data, int64(len(data)), data, nil},
		{"empty file", context.Background(), nil, 0, nil, nil},
		{"exactly one buffer", context.Background(), data[:readBufSize], readBufSize, data[:readBufSize], nil},
		{"grown since open: cut at the announced size", context.Background(), data, 100_000, data[:100_000], nil},
		{"shrunk since open: an error, not a short file", context.Background(), data[:100_000], int64(len(data)), nil, errShrank},
		{"shutdown", cancelled, data, int64(len(data)), nil, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &snapshotReader{ctx: tc.ctx, f: bytes.NewReader(tc.file), size: tc.size, buf: make([]byte, readBufSize)}
			// Read as the library does: io.ReadFull of one block at a time.
			var got []byte
			block := make([]byte, 1468)
			var err error
			for {
				var n int
				n, err = io.ReadFull(r, block)
				got = append(got, block[:n]...)
				if err != nil {
					break
				}
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err %v, want EOF", err)
			}
			equalBytes(t, "content", got, tc.want)
		})
	}
}

// TestSnapshotReaderSeek replays what the library does to learn tsize:
// where am I, where is the end, go back.
func TestSnapshotReaderSeek(t *testing.T) {
	data := randomBytes(8, 100_000)
	r := &snapshotReader{ctx: context.Background(), f: bytes.NewReader(data), size: int64(len(data)), buf: make([]byte, readBufSize)}
	steps := []struct {
		offset int64
		whence int
		want   int64
		fail   bool
	}{
		{0, io.SeekCurrent, 0, false},
		{0, io.SeekEnd, int64(len(data)), false},
		{0, io.SeekStart, 0, false},
		{-1, io.SeekStart, 0, true},
		{1, io.SeekEnd, 0, true},
		{0, 42, 0, true},
	}
	for _, st := range steps {
		got, err := r.Seek(st.offset, st.whence)
		if (err != nil) != st.fail || (!st.fail && got != st.want) {
			t.Errorf("Seek(%d, %d) = %d, %v; want %d, fail %v", st.offset, st.whence, got, err, st.want, st.fail)
		}
	}
	head := make([]byte, 1000)
	if _, err := io.ReadFull(r, head); err != nil {
		t.Fatal(err)
	}
	if pos, _ := r.Seek(0, io.SeekCurrent); pos != 1000 {
		t.Errorf("position after reading 1000 bytes: %d", pos)
	}
	if _, err := r.Seek(50_000, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "after seeking to 50000", rest, data[50_000:])
}
