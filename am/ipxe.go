package am

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/imagename"
	"github.com/orbit-lab/netboot/internal/store"
)

// IPXEPath is where the per-node iPXE scripts are: IPXEPath + <IP in hex>,
// the URL DHCP gives iPXE clients.
const IPXEPath = "/ipxe/"

// IPXEConfig says where the images' iPXE entries are and where their files
// are served over HTTP; an empty Prefix (HTTP boot files off) turns the
// scripts off.
type IPXEConfig struct {
	Root   string // tftp_root
	Prefix string // http_boot.prefix, e.g. /boot/
}

// ipxeExit is the script of a node without a link: iPXE leaves, and the
// firmware tries its next boot entry.
const ipxeExit = "#!ipxe\nexit\n"

var ipxeHex = regexp.MustCompile(`^[0-9A-F]{8}$`)

// ipxeRoutes adds GET (and HEAD) IPXEPath:hex.
// Firmware asks with no credentials: they are public.
func (s *Server) ipxeRoutes(r *gin.RouterGroup) {
	if s.cfg.IPXE.Prefix == "" {
		return
	}
	apierr.Register(r, s.cfg.Guard, []apierr.Route{
		{Method: http.MethodGet, Path: IPXEPath + ":hex", Handler: s.ipxeScript, Role: apierr.RolePublic},
		{Method: http.MethodHead, Path: IPXEPath + ":hex", Handler: s.ipxeScript, Role: apierr.RolePublic},
	})
}

// ipxeScript renders a node's iPXE script from its boot link: the base URL
// of the boot files (the host the script was asked from, so that it works
// whatever address iPXE used), then the linked image's iPXE entry, which
// nbctl image build wrote beside its pxelinux and GRUB configs. No link,
// or an image without an entry: exit. Each script is on the node's
// timeline.
func (s *Server) ipxeScript(c *gin.Context) {
	hex := c.Param("hex")
	if !ipxeHex.MatchString(hex) {
		c.String(http.StatusNotFound, "not a node address in hex: want 8 upper-case hex digits\n")
		return
	}
	ctx := c.Request.Context()
	script, l, err := s.renderIPXE(ctx, hex, c.Request.Host)
	if err != nil {
		s.log.Error("iPXE script", "hex", hex, "err", err)
		c.String(http.StatusInternalServerError, "internal error\n")
		return
	}
	// A script asked without a link is on the timeline too: it is how a
	// node that was just imaged shows it has gone past netboot to its disk.
	hrn, detail := l.HRN, "image="+l.Image
	if hrn == "" {
		hrn, detail = s.nodeAt(ctx, hex), "no link"
	}
	if script == ipxeExit {
		detail += " script=exit"
	}
	if hrn != "" {
		if err := s.inv.AddEvent(context.WithoutCancel(ctx), store.Event{HRN: hrn, At: time.Now().UTC(), Source: "http", What: "IPXE", Detail: detail}); err != nil {
			s.log.Warn("iPXE script: timeline event not written", "hrn", hrn, "err", err)
		}
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "text/plain; charset=utf-8", []byte(script))
}

// nodeAt is the HRN of the node whose control IP hex (8 hex digits, as
// in the script's path) is, "" if none.
func (s *Server) nodeAt(ctx context.Context, hex string) string {
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return ""
	}
	ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	n, err := s.inv.NodeByIP(ctx, ip.String())
	if err != nil {
		return ""
	}
	return n.HRN
}

// renderIPXE is the script for hex, and the link it follows (zero: none).
func (s *Server) renderIPXE(ctx context.Context, hex, host string) (string, store.BootLink, error) {
	l, ok, err := s.links.Lookup(ctx, hex)
	if err != nil || !ok {
		return ipxeExit, store.BootLink{}, err
	}
	entry, err := os.ReadFile(filepath.Join(s.cfg.IPXE.Root, filepath.FromSlash(imagename.IPXEScript(l.Image))))
	if errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("iPXE script: the linked image has no iPXE entry (built before they existed?): exit", "hrn", l.HRN, "image", l.Image)
		return ipxeExit, l, nil
	}
	if err != nil {
		return "", l, fmt.Errorf("iPXE entry of %s: %w", l.Image, err)
	}
	// The appliance, for the entry's ip= boot server: the address iPXE
	// reached, else what DHCP said.
	appliance := "${next-server}"
	if h, _, err := net.SplitHostPort(host); err == nil {
		if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
			appliance = a.String()
		}
	} else if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		appliance = a.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!ipxe\n# netbootd: %s boots %s\n", l.HRN, l.Image)
	fmt.Fprintf(&b, "set base http://%s%s\n", host, s.cfg.IPXE.Prefix)
	fmt.Fprintf(&b, "set appliance %s\n", appliance)
	b.Write(entry)
	return b.String(), l, nil
}
