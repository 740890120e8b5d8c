package dhcpd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/orbit-lab/netboot/internal/store"
)

// loaderConfig is testConfig with every loader path configured, as
// netbootd configures them by default (aa64 present).
func loaderConfig() Config {
	c := testConfig()
	c.BootfileEFI = "shimx64.efi"
	c.BootfileIPXEEFI = "snponly.efi"
	c.BootfileAA64 = "shimaa64.efi"
	c.UEFILoader = UEFILoaderShim
	c.IPXEScript = "http://10.18.0.1:5054/ipxe/"
	c.HTTPBoot = "http://10.18.0.1:5054/boot/"
	return c
}

func TestChooseLoader(t *testing.T) {
	bios := clientInfo{arch: 0, pxe: true}
	none := clientInfo{arch: -1}
	ia32 := clientInfo{arch: 6, pxe: true}
	efi7 := clientInfo{arch: 7, pxe: true}
	efi9 := clientInfo{arch: 9, pxe: true}
	arm := clientInfo{arch: 11, pxe: true}
	http16 := clientInfo{arch: 16, http: true}
	http19 := clientInfo{arch: 19, http: true}
	ipxeBIOS := clientInfo{arch: 0, pxe: true, ipxe: true}
	ipxeEFI := clientInfo{arch: 7, pxe: true, ipxe: true}
	ipxeHTTP := clientInfo{arch: 16, http: true, ipxe: true}

	ipxeLoader := func(c *Config) { c.UEFILoader = UEFILoaderIPXE }
	noAA64 := func(c *Config) { c.BootfileAA64 = "" }
	noScript := func(c *Config) { c.IPXEScript = "" }
	noHTTP := func(c *Config) { c.HTTPBoot = "" }
	const hex, img = "0A120102", "efi/orbit-2.0.0.img"
	tests := []struct {
		name   string
		edit   func(*Config)
		req    loaderRequest
		file   string
		http   bool
		kindIs string
	}{
		{"BIOS", nil, loaderRequest{client: bios, hex: hex}, "pxelinux.0", false, "bios"},
		{"no option 93", nil, loaderRequest{client: none, hex: hex}, "pxelinux.0", false, "bios"},
		{"unknown arch", nil, loaderRequest{client: clientInfo{arch: 2}}, "pxelinux.0", false, "bios"},
		{"UEFI IA32: the UEFI file, as before", nil, loaderRequest{client: ia32}, "shimx64.efi", false, "shim"},
		{"UEFI x86-64 (7)", nil, loaderRequest{client: efi7, hex: hex}, "shimx64.efi", false, "shim"},
		{"UEFI x86-64 (9)", nil, loaderRequest{client: efi9, hex: hex}, "shimx64.efi", false, "shim"},
		{"UEFI x86-64 (7), uefi_loader ipxe", ipxeLoader, loaderRequest{client: efi7}, "snponly.efi", false, "ipxe-efi"},
		{"UEFI x86-64 (9), uefi_loader ipxe", ipxeLoader, loaderRequest{client: efi9}, "snponly.efi", false, "ipxe-efi"},
		{"UEFI IA32, uefi_loader ipxe: snponly.efi is x86-64 only", ipxeLoader, loaderRequest{client: ia32}, "shimx64.efi", false, "shim"},
		{"BIOS, uefi_loader ipxe: unchanged", ipxeLoader, loaderRequest{client: bios}, "pxelinux.0", false, "bios"},
		{"arm64 PXE", nil, loaderRequest{client: arm}, "shimaa64.efi", false, "aa64"},
		{"arm64 PXE, no aa64 file: nothing", noAA64, loaderRequest{client: arm}, "", false, "aa64"},
		{"UEFI x86-64 (7), no link: a file that is not there (the firmware's next entry)", nil, loaderRequest{client: efi7, hex: hex, unlinked: true}, NoLinkFile, false, "localboot"},
		{"UEFI x86-64 (9), no link", nil, loaderRequest{client: efi9, hex: hex, unlinked: true}, NoLinkFile, false, "localboot"},
		{"UEFI IA32, no link", nil, loaderRequest{client: ia32, hex: hex, unlinked: true}, NoLinkFile, false, "localboot"},
		{"UEFI x86-64, uefi_loader ipxe, no link", ipxeLoader, loaderRequest{client: efi9, hex: hex, unlinked: true}, NoLinkFile, false, "localboot"},
		{"arm64 PXE, no link", nil, loaderRequest{client: arm, hex: hex, unlinked: true}, NoLinkFile, false, "localboot"},
		{"BIOS, no link: pxelinux (LOCALBOOT)", nil, loaderRequest{client: bios, hex: hex, unlinked: true}, "pxelinux.0", false, "bios"},
		{"iPXE on UEFI, no link: its script (which exits)", nil, loaderRequest{client: ipxeEFI, hex: hex, unlinked: true}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"override wins over no link", nil, loaderRequest{client: efi7, hex: hex, unlinked: true, override: "x/own.efi"}, "x/own.efi", false, "override"},
		{"HTTP Boot with a link", nil, loaderRequest{client: http16, hex: hex, httpFile: img}, "http://10.18.0.1:5054/boot/" + img, true, "http"},
		{"HTTP Boot, link not known: no file, 60 still echoed", nil, loaderRequest{client: http16, hex: hex}, "", true, "http"},
		{"HTTP Boot without a link: a URL that is not there", nil, loaderRequest{client: http16, hex: hex, unlinked: true}, "http://10.18.0.1:5054/boot/" + NoLinkFile, true, "localboot"},
		{"arm64 HTTP Boot without a link: a URL that is not there", nil, loaderRequest{client: http19, hex: hex, unlinked: true}, "http://10.18.0.1:5054/boot/" + NoLinkFile, true, "localboot"},
		{"HTTP Boot without a link, HTTP boot files off: no file", noHTTP, loaderRequest{client: http16, hex: hex, unlinked: true}, "", true, "http"},
		{"iPXE over HTTP Boot without a link: the script", nil, loaderRequest{client: ipxeHTTP, hex: hex, unlinked: true}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"HTTP Boot, HTTP boot files off", noHTTP, loaderRequest{client: http16, hex: hex, httpFile: img}, "", true, "http"},
		{"HTTP Boot by vendor class only (no 93)", nil, loaderRequest{client: clientInfo{arch: -1, http: true}, httpFile: img}, "http://10.18.0.1:5054/boot/" + img, true, "http"},
		{"arm64 HTTP Boot with a link", nil, loaderRequest{client: http19, httpFile: img}, "http://10.18.0.1:5054/boot/shimaa64.efi", true, "http"},
		{"arm64 HTTP Boot, link not known", nil, loaderRequest{client: http19}, "", true, "http"},
		{"arm64 HTTP Boot, no aa64 file", noAA64, loaderRequest{client: http19, httpFile: img}, "", true, "http"},
		{"iPXE on BIOS: the node's script", nil, loaderRequest{client: ipxeBIOS, hex: hex}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"iPXE on UEFI: the node's script", nil, loaderRequest{client: ipxeEFI, hex: hex}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"iPXE over HTTP Boot: the script", nil, loaderRequest{client: ipxeHTTP, hex: hex, httpFile: img}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"iPXE, uefi_loader ipxe: the script, not snponly again", ipxeLoader, loaderRequest{client: ipxeEFI, hex: hex}, "http://10.18.0.1:5054/ipxe/" + hex, false, "ipxe-script"},
		{"iPXE, no script URL: the arch's file", noScript, loaderRequest{client: ipxeBIOS, hex: hex}, "pxelinux.0", false, "bios"},
		{"iPXE, address unknown: the arch's file", nil, loaderRequest{client: ipxeEFI}, "shimx64.efi", false, "shim"},
		{"override wins over BIOS", nil, loaderRequest{client: bios, override: "x/own.0"}, "x/own.0", false, "override"},
		{"override wins over UEFI", ipxeLoader, loaderRequest{client: efi7, override: "x/own.efi"}, "x/own.efi", false, "override"},
		{"override wins over iPXE", nil, loaderRequest{client: ipxeBIOS, hex: hex, override: "x/own.0"}, "x/own.0", false, "override"},
		{"override wins over HTTP Boot, 60 echoed", nil, loaderRequest{client: http16, hex: hex, override: "x/own.efi"}, "x/own.efi", true, "override"},
		{"override wins over arm64", noAA64, loaderRequest{client: arm, override: "x/own.efi"}, "x/own.efi", false, "override"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := loaderConfig()
			if tt.edit != nil {
				tt.edit(&c)
			}
			got := c.chooseLoader(tt.req)
			want := loaderChoice{file: tt.file, httpClient: tt.http, kind: tt.kindIs}
			if got != want {
				t.Errorf("chooseLoader = %+v, want %+v", got, want)
			}
		})
	}
}

func TestIsHTTPClient(t *testing.T) {
	for _, tt := range []struct {
		arch   int
		vendor string
		want   bool
	}{
		{16, "HTTPClient:Arch:00016:UNDI:003000", true},
		{19, "", true},
		{-1, "HTTPClient", true},
		{7, "PXEClient:Arch:00007:UNDI:003000", false},
		{0, "PXEClient", false},
		{-1, "httpclient", false},
	} {
		if got := isHTTPClient(tt.arch, tt.vendor); got != tt.want {
			t.Errorf("isHTTPClient(%d, %q) = %v", tt.arch, tt.vendor, got)
		}
	}
}

// fakeLinks is a Links with one linked hex name.
type fakeLinks map[string]string // hex -> image

func (f fakeLinks) LinkByHex(_ context.Context, hex string, _ time.Time) (store.BootLink, error) {
	img, ok := f[hex]
	if !ok {
		return store.BootLink{}, fmt.Errorf("fake: %w", store.ErrNotFound)
	}
	return store.BootLink{Hex: hex, Image: img}, nil
}

// TestLoaderOnTheWire: the whole path, request bytes to reply bytes, in
// both modes: each kind of client gets the same boot file from the address
// server and the proxy, in the BOOTP file field and option 67, option 60
// "HTTPClient" for HTTP Boot, and the link decides UEFI PXE and HTTP Boot
// (no link: NoLinkFile, which the firmware fails to read at once).
func TestLoaderOnTheWire(t *testing.T) {
	vendor := func(v string) reqOpt { return withOpt(60, []byte(v)) }
	plain := without(77, 175) // not iPXE: the firmware's own PXE or HTTP stack
	tests := []struct {
		name   string
		opts   []reqOpt
		linked bool
		file   string // "" no boot file
		vc60   string // option 60 in the reply
		edit   func(*Config)
	}{
		{"BIOS PXE", []reqOpt{plain}, true, "pxelinux.0", `"PXEClient"`, nil},
		{"UEFI PXE (7)", []reqOpt{plain, withArch(7), vendor("PXEClient:Arch:00007:UNDI:003000")}, true, "shimx64.efi", `"PXEClient"`, nil},
		{"UEFI PXE (9), no link: a file that is not there, the firmware goes on to the disk", []reqOpt{plain, withArch(9), vendor("PXEClient:Arch:00009:UNDI:003000")}, false, NoLinkFile, `"PXEClient"`, nil},
		{"UEFI PXE (9), linked", []reqOpt{plain, withArch(9), vendor("PXEClient:Arch:00009:UNDI:003000")}, true, "shimx64.efi", `"PXEClient"`, nil},
		{"BIOS PXE, no link: pxelinux all the same (LOCALBOOT)", []reqOpt{plain}, false, "pxelinux.0", `"PXEClient"`, nil},
		{"arm64 PXE", []reqOpt{plain, withArch(11), vendor("PXEClient:Arch:00011:UNDI:003000")}, true, "shimaa64.efi", `"PXEClient"`, nil},
		{"iPXE BIOS", nil, false, "http://10.18.0.1:5054/ipxe/0A120102", `"PXEClient"`, nil},
		{"iPXE UEFI", []reqOpt{withArch(7)}, true, "http://10.18.0.1:5054/ipxe/0A120102", `"PXEClient"`, nil},
		{"UEFI HTTP Boot, linked", []reqOpt{plain, withArch(16), vendor("HTTPClient:Arch:00016:UNDI:003000")}, true,
			"http://10.18.0.1:5054/boot/efi/orbit-2.0.0.img", `"HTTPClient"`, nil},
		{"UEFI HTTP Boot, no link: a URL that is not there", []reqOpt{plain, withArch(16), vendor("HTTPClient:Arch:00016:UNDI:003000")}, false,
			"http://10.18.0.1:5054/boot/" + NoLinkFile, `"HTTPClient"`, nil},
		// The proxy stays silent then: an offer with no file would keep
		// the firmware waiting on it; the address server still gives an
		// address.
		{"arm64 PXE, no aa64 file: no boot file", []reqOpt{plain, withArch(11), vendor("PXEClient:Arch:00011:UNDI:003000")}, true, "", `"PXEClient"`,
			func(c *Config) { c.BootfileAA64 = "" }},
	}
	for _, mode := range []Mode{ModeServer, ModeProxy} {
		for _, tt := range tests {
			t.Run(string(mode)+"/"+tt.name, func(t *testing.T) {
				cfg := loaderConfig()
				cfg.Mode = mode
				if tt.edit != nil {
					tt.edit(&cfg)
				}
				b := backend(newFakeStore(testNodes...), &fakeEvents{})
				links := fakeLinks{}
				if tt.linked {
					links["0A120102"] = "orbit-2.0.0"
				}
				b.Links = links
				s, err := New(cfg, b, nil)
				if err != nil {
					t.Fatal(err)
				}
				out, dst := s.handle(context.Background(), pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, tt.opts...).ToBytes(), clientSrc, 67)
				got := summarize(t, out, dst)
				if mode == ModeProxy && tt.file == "" {
					if got != nil {
						t.Fatalf("proxy answered a client it has no boot file for: %+v", got)
					}
					return
				}
				if got == nil {
					t.Fatal("no reply")
				}
				wantOpt67 := ""
				if tt.file != "" {
					wantOpt67 = fmt.Sprintf("%q", tt.file)
				}
				if got.File != tt.file || got.Opts[67] != wantOpt67 {
					t.Errorf("file %q, option 67 %s; want %q", got.File, got.Opts[67], tt.file)
				}
				if got.Opts[60] != tt.vc60 && (mode == ModeProxy || tt.vc60 == `"HTTPClient"`) {
					t.Errorf("option 60 = %s, want %s", got.Opts[60], tt.vc60)
				}
				if mode == ModeServer && tt.vc60 != `"HTTPClient"` && got.Opts[60] != "" {
					t.Errorf("address server: option 60 = %s, want none", got.Opts[60])
				}
			})
		}
	}
}

// TestHTTPBootNeedsRAMDisk: with BootRoot set (netbootd sets tftp_root),
// a linked HTTP Boot client gets its image's RAM-disk URL only once the
// image has one; before, no boot file, and its event says what is missing.
func TestHTTPBootNeedsRAMDisk(t *testing.T) {
	cfg := loaderConfig()
	cfg.BootRoot = t.TempDir()
	b := backend(newFakeStore(testNodes...), &fakeEvents{})
	b.Links = fakeLinks{"0A120102": "orbit-2.0.0"}
	s, err := New(cfg, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	ask := func() (file, event string) {
		t.Helper()
		req := pxeRequest(dhcpv4.MessageTypeDiscover, knownMAC, without(77, 175), withArch(16), withOpt(60, []byte("HTTPClient:Arch:00016:UNDI:003000")))
		out, dst := s.handle(context.Background(), req.ToBytes(), clientSrc, 67)
		got := summarize(t, out, dst)
		if got == nil {
			t.Fatal("no reply")
		}
		select {
		case e := <-s.rec.events:
			event = e.Detail
		default:
		}
		return got.File, event
	}
	if file, ev := ask(); file != "" || !strings.Contains(ev, "missing=efi/orbit-2.0.0.img") {
		t.Errorf("image without a RAM disk: file %q, event %q; want none, saying missing=efi/orbit-2.0.0.img", file, ev)
	}
	img := filepath.Join(cfg.BootRoot, "efi", "orbit-2.0.0.img")
	if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, []byte("FAT"), 0o644); err != nil {
		t.Fatal(err)
	}
	if file, ev := ask(); file != "http://10.18.0.1:5054/boot/efi/orbit-2.0.0.img" || strings.Contains(ev, "missing") {
		t.Errorf("image with a RAM disk: file %q, event %q; want its URL", file, ev)
	}
}
