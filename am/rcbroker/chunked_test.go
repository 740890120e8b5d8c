package rcbroker_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/internal/chunkimg"
	"github.com/orbit-lab/netboot/internal/zstdtest"
	"github.com/orbit-lab/netboot/rc/proto"
)

// mixedDisk is n chunks of chunkimg.MinChunkSize: random, zero and
// text in turn, the last one cut short by 1000 bytes.
func mixedDisk(n int) []byte {
	return zstdtest.MixedDisk(n*chunkimg.MinChunkSize-1000, chunkimg.MinChunkSize, "rzt", 7)
}

// manifestOf reads an image's manifest as stored.
func manifestOf(t *testing.T, img []byte) (*chunkimg.Manifest, []byte) {
	t.Helper()
	m, b, err := chunkimg.ReadManifest(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return m, b
}

// imageFiles lists the image directory, dot files too.
func imageFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestChunkedImageStore: a chunked image is stored as NAME.nbi, named by
// its manifest's digest, served whole, by range and its manifest alone;
// it replaces a single stream of the same name and is replaced by one.
func TestChunkedImageStore(t *testing.T) {
	a := start(t, rcbroker.Config{})
	u := a.URL + "/api/v1/disk-images/"
	dir := filepath.Join(a.Dir, "images")
	raw := mixedDisk(10)
	img, digest := zstdtest.Chunked(t, raw, chunkimg.MinChunkSize)
	m, mb := manifestOf(t, img)
	if chunkimg.Digest(mb) != digest || sum(img) == digest {
		t.Fatalf("digest %s: want the manifest's, not the file's", digest)
	}
	legacy := zstdtest.Compress(t, raw)

	// Stored over a zstd image of the same name: one file for the name.
	if ans := req(t, http.MethodPut, u+"c1", operatorToken, legacy, proto.HeaderSHA256, sum(legacy)); ans.code != http.StatusCreated {
		t.Fatalf("zstd upload: %d %s", ans.code, ans.body)
	}
	for _, tc := range []struct {
		name    string
		trailer bool
	}{{"header", false}, {"trailer", true}} {
		t.Run("put with the digest in a "+tc.name, func(t *testing.T) {
			var ans answer
			if tc.trailer {
				ans = putTrailer(t, u+"c1", img, digest)
			} else {
				ans = req(t, http.MethodPut, u+"c1", operatorToken, img, proto.HeaderSHA256, digest)
			}
			var got proto.DiskImage
			if ans.code != http.StatusCreated || json.Unmarshal([]byte(ans.body), &got) != nil {
				t.Fatalf("upload: %d %s", ans.code, ans.body)
			}
			want := proto.DiskImage{Name: "c1", Format: proto.FormatChunked, Size: int64(len(img)), SHA256: digest, Modified: got.Modified,
				DiskSize: int64(len(raw)), ChunkSize: chunkimg.MinChunkSize, Chunks: 10, ZeroChunks: 3}
			if got != want {
				t.Errorf("stored %+v\nwant   %+v", got, want)
			}
			if names := imageFiles(t, dir); !slices.Equal(names, []string{"c1.nbi"}) {
				t.Errorf("image directory: %v, want c1.nbi alone", names)
			}
		})
	}

	get := req(t, http.MethodGet, u+"c1", operatorToken, nil)
	if get.code != http.StatusOK || get.body != string(img) || get.header.Get(proto.HeaderSHA256) != digest || get.header.Get(proto.HeaderFormat) != proto.FormatChunked {
		t.Errorf("GET c1: %d, %d bytes, %v", get.code, len(get.body), get.header)
	}
	c := m.Chunks[2] // a frame, as a loading RC fetches it
	rng := "bytes=" + itoa(c.Offset) + "-" + itoa(c.Offset+c.Size-1)
	if r := req(t, http.MethodGet, u+"c1", operatorToken, nil, "Range", rng); r.code != http.StatusPartialContent || r.body != string(img[c.Offset:c.Offset+c.Size]) {
		t.Errorf("range %s: %d, %d bytes", rng, r.code, len(r.body))
	}
	if r := req(t, http.MethodHead, u+"c1", operatorToken, nil); r.code != http.StatusOK || r.header.Get("Content-Length") != itoa(int64(len(img))) {
		t.Errorf("HEAD: %d %v", r.code, r.header)
	}
	mf := req(t, http.MethodGet, u+"c1/manifest", operatorToken, nil)
	if mf.code != http.StatusOK || mf.body != string(mb) || mf.header.Get(proto.HeaderSHA256) != digest || !strings.HasPrefix(mf.header.Get("Content-Type"), "application/json") {
		t.Errorf("GET c1/manifest: %d %v, %.100s", mf.code, mf.header, mf.body)
	}

	// A single stream and a chunked image side by side in a listing.
	if ans := req(t, http.MethodPut, u+"z1", operatorToken, legacy, proto.HeaderSHA256, sum(legacy)); ans.code != http.StatusCreated {
		t.Fatalf("zstd upload: %d %s", ans.code, ans.body)
	}
	for _, tc := range []struct {
		name string
		want int
		says string
	}{
		{"z1", http.StatusConflict, "not a chunked image"},
		{"nosuch", http.StatusNotFound, "nosuch"},
		{"a..b", http.StatusBadRequest, "a..b"},
	} {
		if r := req(t, http.MethodGet, u+tc.name+"/manifest", operatorToken, nil); r.code != tc.want || !strings.Contains(r.body, tc.says) {
			t.Errorf("GET %s/manifest: %d %s, want %d saying %q", tc.name, r.code, r.body, tc.want, tc.says)
		}
	}
	var list []proto.DiskImage
	if ans := req(t, http.MethodGet, a.URL+"/api/v1/disk-images", operatorToken, nil); ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &list) != nil {
		t.Fatalf("list: %d %s", ans.code, ans.body)
	}
	if len(list) != 2 || list[0].SHA256 != digest || list[0].Chunks != 10 || list[0].ZeroChunks != 3 || list[0].DiskSize != int64(len(raw)) ||
		list[1].Format != proto.FormatZstd || list[1].SHA256 != sum(legacy) || list[1].Chunks != 0 || list[1].DiskSize != 0 {
		t.Errorf("list = %+v", list)
	}

	// A file dropped in by hand that is no chunked image hides no other.
	if err := os.WriteFile(filepath.Join(dir, "broken.nbi"), []byte(proto.ChunkedMagic+"truncated"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ans := req(t, http.MethodGet, a.URL+"/api/v1/disk-images", operatorToken, nil); ans.code != http.StatusOK || json.Unmarshal([]byte(ans.body), &list) != nil || len(list) != 2 {
		t.Errorf("list with a broken .nbi: %d %s", ans.code, ans.body)
	}
	os.Remove(filepath.Join(dir, "broken.nbi"))

	// A single stream replaces the chunked image: no .nbi left.
	if ans := req(t, http.MethodPut, u+"c1", operatorToken, legacy, proto.HeaderSHA256, sum(legacy)); ans.code != http.StatusCreated {
		t.Fatalf("zstd upload over c1: %d %s", ans.code, ans.body)
	}
	if names := imageFiles(t, dir); !slices.Equal(names, []string{"c1.zst", "c1.zst.sha256", "z1.zst", "z1.zst.sha256"}) {
		t.Errorf("image directory: %v", names)
	}
	if r := req(t, http.MethodDelete, u+"z1", operatorToken, nil); r.code != http.StatusNoContent {
		t.Errorf("DELETE: %d %s", r.code, r.body)
	}
}

// TestChunkedUploadRefused: a chunked upload that is not whole and
// consistent, or whose digest is not the one claimed, is refused with a
// 400 that says why; the stored image stays, and no file is left behind.
func TestChunkedUploadRefused(t *testing.T) {
	a := start(t, rcbroker.Config{})
	u := a.URL + "/api/v1/disk-images/"
	dir := filepath.Join(a.Dir, "images")
	good, digest := zstdtest.Chunked(t, mixedDisk(6), chunkimg.MinChunkSize)
	if ans := req(t, http.MethodPut, u+"img", operatorToken, good, proto.HeaderSHA256, digest); ans.code != http.StatusCreated {
		t.Fatalf("upload: %d %s", ans.code, ans.body)
	}
	m, mb := manifestOf(t, good)
	manifestAt := int64(len(good)) - chunkimg.FooterSize - int64(len(mb))
	other, otherDigest := zstdtest.Chunked(t, mixedDisk(5), chunkimg.MinChunkSize)
	edit := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// reManifest is good with its manifest replaced by m2's bytes, and
	// the digest of those.
	reManifest := func(change func(*chunkimg.Manifest)) ([]byte, string) {
		m2 := *m
		m2.Chunks = slices.Clone(m.Chunks)
		change(&m2)
		b, _ := json.Marshal(m2)
		out := append(bytes.Clone(good[:manifestAt]), b...)
		foot := binary.BigEndian.AppendUint64(nil, uint64(len(b)))
		return append(append(out, foot...), "NBCHUNKM"...), chunkimg.Digest(b)
	}
	swapped, swappedDigest := reManifest(func(m2 *chunkimg.Manifest) { // chunk 0's hash is chunk 3's
		m2.Chunks[0].SHA256 = m2.Chunks[3].SHA256
	})
	dropped, droppedDigest := reManifest(func(m2 *chunkimg.Manifest) { // a stored chunk said to be zero
		m2.Chunks[2] = chunkimg.Chunk{Zero: true}
	})
	for _, tc := range []struct {
		name string
		body []byte
		sum  string
		says string
	}{
		{"flipped byte in a frame", edit(func(b []byte) []byte { b[m.Chunks[0].Offset+m.Chunks[0].Size/2] ^= 0x40; return b }), digest, "not a valid chunked image"},
		{"flipped byte in the manifest", edit(func(b []byte) []byte { b[manifestAt+20] ^= 0x01; return b }), digest, "not a valid chunked image"},
		{"truncated", good[:len(good)-100], digest, "not a valid chunked image"},
		{"no footer", good[:manifestAt], digest, "not a valid chunked image"},
		{"header only", good[:chunkimg.HeaderSize], digest, "not a valid chunked image"},
		{"bytes after the footer", append(bytes.Clone(good), 0), digest, "not a valid chunked image"},
		{"a frame's hash swapped, digest of that manifest", swapped, swappedDigest, "not a valid chunked image"},
		{"a stored chunk said zero, digest of that manifest", dropped, droppedDigest, "not a valid chunked image"},
		{"wrong digest", other, digest, "checksum mismatch"},
		{"the file's sha256, not the manifest's", other, sum(other), "checksum mismatch"},
		{"no digest", other, "", "no " + proto.HeaderSHA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, trailer := range []bool{false, true} {
				var ans answer
				if trailer {
					ans = putTrailer(t, u+"img", tc.body, tc.sum)
				} else {
					ans = req(t, http.MethodPut, u+"img", operatorToken, tc.body, proto.HeaderSHA256, tc.sum)
				}
				if ans.code != http.StatusBadRequest || !strings.Contains(ans.body, tc.says) || !strings.Contains(ans.body, "unchanged") {
					t.Errorf("trailer %v: %d %s, want a 400 saying %q", trailer, ans.code, ans.body, tc.says)
				}
			}
			if get := req(t, http.MethodGet, u+"img", operatorToken, nil); get.code != http.StatusOK || get.body != string(good) || get.header.Get(proto.HeaderSHA256) != digest {
				t.Errorf("the stored image changed: %d, %d bytes, %v", get.code, len(get.body), get.header)
			}
			if names := imageFiles(t, dir); !slices.Equal(names, []string{"img.nbi"}) {
				t.Errorf("image directory: %v, want img.nbi alone", names)
			}
		})
	}
	// The right digest stores it.
	if ans := req(t, http.MethodPut, u+"img", operatorToken, other, proto.HeaderSHA256, otherDigest); ans.code != http.StatusCreated {
		t.Errorf("upload: %d %s", ans.code, ans.body)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
