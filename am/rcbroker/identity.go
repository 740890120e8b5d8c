package rcbroker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
)

// Node identity. MACs are not secret, and experimenters have root on the
// nodes: an RC is the node it names only if it speaks from that node's own
// address. The broker takes it from the TCP connection, never from a
// forwarding header, which any node can write. Nodes reach the appliance
// directly, also behind a DHCP relay or in proxy-DHCP mode (the site's
// DHCP gives them their control IP), so their source is their address.

// checkSource admits an enrollment of node n from src: src must be the
// control IP the inventory reserves for n, or the address netbootd's DHCP
// has bound to n's control MAC and not yet seen expire.
func (b *Broker) checkSource(ctx context.Context, n inventory.Node, src netip.Addr, now time.Time) error {
	if ip, err := netip.ParseAddr(n.ControlIP); err == nil && src.IsValid() && ip.Unmap() == src {
		return nil
	}
	l, err := b.st.LeaseByMAC(ctx, n.ControlMAC)
	switch {
	case err == nil && src.IsValid() && l.IP.Unmap() == src && l.State == store.LeaseBound && l.ExpiresAt.After(now):
		return nil
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return err
	}
	return apierr.New(http.StatusForbidden, "enroll: node %s (MAC %s) enrolls from its control IP %s or its DHCP lease, not from %s: an RC may enroll only as the node it runs on",
		n.HRN, n.ControlMAC, n.ControlIP, addrText(src))
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "an unknown address"
	}
	return a.String()
}

// imageAccess admits a transfer of disk image name: an operator's, or the
// RC's whose enrollment runs the command of type typ (LOAD_IMAGE for a
// download, SAVE_IMAGE for an upload) naming that image. It has answered
// when it returns false.
func (b *Broker) imageAccess(c *gin.Context, name, typ string) bool {
	if apierr.CallerOf(c).Role.AtLeast(apierr.RoleOperator) {
		return true
	}
	e, ok := b.authenticate(c)
	if !ok {
		return false
	}
	_, err := b.st.RunningRCCommand(c.Request.Context(), e.ID, typ, name)
	if errors.Is(err, store.ErrNotFound) {
		b.log.Warn("rc: disk image refused, no command for it", "hrn", e.HRN, "image", name, "method", c.Request.Method, "client", addrText(peer.Addr(c.Request)))
		b.apiError(c, apierr.New(http.StatusForbidden, "disk image %q: node %s runs no %s of it; a node reaches an image only while its command does (or with an operator token)",
			clip(name), e.HRN, typ))
		return false
	}
	if err != nil {
		b.apiError(c, fmt.Errorf("rcbroker: disk image %q: %w", name, err))
		return false
	}
	return true
}
