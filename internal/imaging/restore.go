package imaging

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// A node's boot link is one per node: the job's link replaces the one an
// Experiment Controller had set (setBootImageNS), and clearing the job's
// link clears that too. So the job notes every link before it begins and
// puts each back as it was, image and expiry, when the node is through:
// at once if the node was not rebooted into its disk (it failed before,
// or NoReboot); after a reboot, only once the node has read its boot
// configuration (readBootConfig: pxelinux's, GRUB's or iPXE's, on its
// timeline), since the link read during that reboot must be none, or the
// node would not
// boot the disk just written. Its references come back as one, the
// latest: they only decide when the link goes.

// readBootConfig reports whether e is a node's boot loader reading what
// its link decides: pxelinux's pxelinux.cfg/..., GRUB's grub/grub.cfg...
// (over TFTP or HTTP), or iPXE's script. Once a node has read one, its
// boot no longer depends on its link.
func readBootConfig(e apiv1.Event) bool {
	switch e.Source {
	case "tftp", "http":
		if strings.HasPrefix(e.What, "pxelinux.cfg/") || strings.HasPrefix(e.What, "grub/grub.cfg") {
			return true
		}
		return e.Source == "http" && e.What == "IPXE"
	}
	return false
}

// linksBefore lists the boot links before the job touches any.
func linksBefore(ctx context.Context, am AM) (map[string]apiv1.BootLink, error) {
	links, err := am.Boot(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: list the boot links: %w", ErrPreflight, err)
	}
	out := make(map[string]apiv1.BootLink, len(links))
	for _, l := range links {
		out[l.HRN] = l
	}
	return out, nil
}

// lastEvent is the ID of the node's latest event, 0 if none.
func (r *runner) lastEvent(ctx context.Context, hrn string) (int64, error) {
	evs, err := r.am.Events(ctx, hrn, 0)
	if err != nil {
		return 0, err
	}
	var last int64
	for _, e := range evs {
		last = max(last, e.ID)
	}
	return last, nil
}

// restore puts back the link the node had before the job, if it had one,
// and says in res what became of it.
func (r *runner) restore(ctx context.Context, n apiv1.Node, res *Result, st nodeState) {
	prior, ok := r.before[n.HRN]
	if !ok {
		return
	}
	res.Before = &prior
	defer func() {
		if res.Phase != "" { // a node the job went through, not one it never touched
			r.report(Update{Node: n.HRN, Phase: res.Phase, Note: "earlier " + res.Restore})
		}
	}()
	if _, _, set := r.linkedAt(n.HRN); !set {
		// Setting an earlier node's link failed: this one was never replaced.
		res.Restored, res.Restore = true, linkText(prior)+": untouched"
		return
	}
	// Cleanup runs also when the job's context is done (timeout, Ctrl-C).
	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := r.clearLink(cleanup, n.HRN); err != nil {
		res.Restore = notRestored(prior, err.Error())
		return
	}
	if st.rebooted {
		err := st.markErr
		if err != nil {
			err = fmt.Errorf("its timeline could not be read before its reboot: %w", err)
		} else {
			r.report(Update{Node: n.HRN, Phase: res.Phase, Note: "waiting for its reboot to read its PXE configuration, to put back its earlier boot link"})
			err = r.waitPXE(ctx, n.HRN, st.mark)
		}
		if err != nil {
			res.Restore = notRestored(prior, err.Error())
			return
		}
	}
	var now []apiv1.BootLink
	err := r.again(cleanup, cut, func() (err error) {
		now, err = r.am.Boot(cleanup)
		return err
	})
	if err != nil {
		res.Restore = notRestored(prior, "listing the boot links: "+err.Error())
		return
	}
	for _, l := range now {
		if l.HRN == n.HRN {
			res.Restore = notRestored(prior, fmt.Sprintf("the node has a link set since (%s), which stays", linkText(l)))
			return
		}
	}
	server, local, _ := r.linkedAt(n.HRN)
	// Measured on each clock apart: the appliance's and ours may differ.
	left := prior.ExpiresAt.Sub(server) - time.Since(local)
	if left < time.Second {
		res.Restore = linkText(prior) + ": not restored: it expired meanwhile"
		return
	}
	if err := r.again(cleanup, unreached, func() error {
		_, err := r.am.SetBoot(cleanup, n.HRN, prior.Image, left)
		return err
	}); err != nil {
		res.Restore = notRestored(prior, err.Error())
		return
	}
	res.Restored, res.Restore = true, linkText(prior)+": restored"
}

// linkedAt is when the job set the node's link, by the appliance's clock
// and by ours; false if it never did.
func (r *runner) linkedAt(hrn string) (server, local time.Time, ok bool) {
	r.linksMu.Lock()
	defer r.linksMu.Unlock()
	at, ok := r.setAt[hrn]
	return at.server, at.local, ok
}

// waitPXE waits, at most BootTimeout, for the node to read its PXE
// configuration after the event mark.
func (r *runner) waitPXE(ctx context.Context, hrn string, mark int64) error {
	wait, cancel := context.WithTimeout(ctx, r.job.BootTimeout)
	defer cancel()
	err := r.poll(wait, func() (bool, error) {
		evs, err := r.am.Events(wait, hrn, mark)
		if err != nil {
			return false, nil // the appliance may be restarting: ask again
		}
		for _, e := range evs {
			if e.ID > mark && readBootConfig(e) {
				return true, nil
			}
		}
		return false, nil
	})
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("the job ended before the node read its PXE configuration after its reboot: %w", ctx.Err())
	}
	return fmt.Errorf("the node read no boot configuration (pxelinux.cfg/, grub/grub.cfg or its iPXE script) within %v of its reboot, and might boot it instead of its disk", r.job.BootTimeout)
}

// notRestored says why a link was not put back, and how to.
func notRestored(prior apiv1.BootLink, why string) string {
	return fmt.Sprintf("%s: NOT restored: %s; to restore it: nbctl boot set --image %s --lifetime DURATION %s",
		linkText(prior), why, prior.Image, prior.HRN)
}

func linkText(l apiv1.BootLink) string {
	return fmt.Sprintf("boot link to %s until %s", l.Image, l.ExpiresAt.Local().Format(time.DateTime))
}
