package rcbroker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/httpbody"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
	"github.com/orbit-lab/netboot/rc/proto"
)

// Bounds of what an RC may send.
const (
	maxEnrollBody = 1 << 20
	maxReportBody = 8 << 20 // a report carries at most a few hundred KiB of output
	maxListItems  = 256     // MACs, addresses, disks
	maxText       = 256     // hostname, image, kernel, ...
	maxRunning    = 1024    // commands an RC may say it runs
)

// readJSON decodes a bounded body; unknown fields are allowed, so that a
// newer RC can talk to an older appliance.
func readJSON(c *gin.Context, limit int64, v any) error {
	if err := httpbody.JSONAllowUnknown(c.Writer, c.Request, limit, v); err != nil {
		return apierr.BadBody(err)
	}
	return nil
}

// clip is what the broker keeps of a short text an RC or a caller sent.
func clip(s string) string { return textclip.Line(s, maxText) }

// checkEnroll normalizes what an RC says about itself.
func checkEnroll(r *proto.EnrollRequest) error {
	if len(r.MACs) == 0 {
		return apierr.BadRequest("enroll: no MAC address")
	}
	if len(r.MACs) > maxListItems || len(r.Addresses) > maxListItems || len(r.Disks) > maxListItems {
		return apierr.BadRequest("enroll: more than %d MACs, addresses or disks", maxListItems)
	}
	var macs []string
	for _, m := range r.MACs {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			return apierr.BadRequest("enroll: %q is not an Ethernet MAC address", clip(m))
		}
		if s := hw.String(); !slices.Contains(macs, s) {
			macs = append(macs, s)
		}
	}
	r.MACs = macs
	switch r.Firmware {
	case "", proto.FirmwareUEFI:
	case proto.FirmwareBIOS:
		if r.SecureBoot != nil && *r.SecureBoot {
			return apierr.BadRequest("enroll: secure_boot on with firmware %s: Secure Boot is UEFI's", r.Firmware)
		}
	default:
		return apierr.BadRequest("enroll: firmware %q: want %s or %s", clip(r.Firmware), proto.FirmwareBIOS, proto.FirmwareUEFI)
	}
	for i, a := range r.Addresses {
		r.Addresses[i] = clip(a)
	}
	for i, d := range r.Disks {
		r.Disks[i] = proto.Disk{Name: clip(d.Name), Path: clip(d.Path), Size: d.Size, Model: clip(d.Model), Removable: d.Removable}
	}
	r.Hostname, r.Image, r.Kernel, r.BootID, r.Version = clip(r.Hostname), clip(r.Image), clip(r.Kernel), clip(r.BootID), clip(r.Version)
	return nil
}

func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("rcbroker: secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// enroll finds the RC's node by its MACs and makes it a new enrollment
// with a new secret.
func (b *Broker) enroll(c *gin.Context) {
	ctx := c.Request.Context()
	var req proto.EnrollRequest
	if err := readJSON(c, maxEnrollBody, &req); err != nil {
		b.apiError(c, err)
		return
	}
	if err := checkEnroll(&req); err != nil {
		b.apiError(c, err)
		return
	}
	apierr.SetTarget(c, strings.Join(req.MACs, ",")) // until a node is found
	var hrns []string
	var node inventory.Node
	for _, mac := range req.MACs {
		n, err := b.st.NodeByMAC(ctx, mac)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			b.apiError(c, err)
			return
		}
		if !slices.Contains(hrns, n.HRN) {
			hrns, node = append(hrns, n.HRN), n
		}
	}
	switch len(hrns) {
	case 0:
		b.log.Warn("rc: enrollment from an unknown node", "macs", req.MACs, "client", peer.Name(c.Request))
		b.apiError(c, fmt.Errorf("enroll: no inventory node has MAC %s: %w", strings.Join(req.MACs, ", "), store.ErrNotFound))
		return
	case 1:
	default:
		b.apiError(c, apierr.New(http.StatusConflict, "enroll: the MACs %s belong to several nodes: %s", strings.Join(req.MACs, ", "), strings.Join(hrns, ", ")))
		return
	}
	now := time.Now()
	if err := b.checkSource(ctx, node, peer.Addr(c.Request), now); err != nil {
		b.log.Warn("rc: enrollment refused", "hrn", node.HRN, "macs", req.MACs, "client", addrText(peer.Addr(c.Request)), "err", err)
		b.apiError(c, err)
		return
	}
	apierr.SetTarget(c, node.HRN)
	secret, err := newSecret()
	if err != nil {
		b.apiError(c, err)
		return
	}
	e, err := b.st.PutRCEnrollment(ctx, store.RCEnrollment{
		HRN: hrns[0], Secret: secret, BootID: req.BootID, Image: req.Image, Hostname: req.Hostname,
		Info: req, Firmware: req.Firmware, SecureBoot: req.SecureBoot, EnrolledAt: now, LastSeen: now,
	}, store.Event{HRN: hrns[0], At: now, Source: "rc", What: "enrolled", Detail: enrolledDetail(req)})
	if err != nil {
		b.apiError(c, err)
		return
	}
	b.log.Info("rc enrolled", "hrn", e.HRN, "enrollment", e.ID, "image", req.Image, "hostname", req.Hostname, "client", addrText(peer.Addr(c.Request)))
	b.wake.notify(e.HRN) // commands moved to this enrollment, and old polls to end
	c.JSON(http.StatusOK, proto.EnrollResponse{HRN: e.HRN, Enrollment: e.ID, Secret: secret, PollWait: b.cfg.PollWait.String()})
}

// enrolledDetail is the enrollment event's detail: the image, then how
// the node booted when its RC said (an older RC does not).
func enrolledDetail(req proto.EnrollRequest) string {
	d := req.Image
	if req.Firmware != "" {
		d += " firmware=" + req.Firmware
	}
	if req.SecureBoot != nil {
		d += " secure_boot=" + map[bool]string{true: "on", false: "off"}[*req.SecureBoot]
	}
	return d
}

// parseIDs parses "3,4,5".
func parseIDs(s string) ([]int64, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > maxRunning {
		return nil, apierr.BadRequest("running: more than %d commands", maxRunning)
	}
	ids := make([]int64, 0, len(parts))
	for _, p := range parts {
		id, err := strconv.ParseInt(p, 10, 64)
		if err != nil || id <= 0 {
			return nil, apierr.BadRequest("running: %q is not a command id", clip(p))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// poll hands the RC its node's oldest queued command, signed, waiting up to
// ?wait= for one. ?running= lists the commands the RC is running: the
// enrollment's other running commands were lost and fail.
func (b *Broker) poll(c *gin.Context) {
	ctx := c.Request.Context()
	e, ok := b.authenticate(c)
	if !ok {
		return
	}
	wait := time.Duration(0)
	if v := c.Query("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			b.apiError(c, apierr.BadRequest("wait %q: want a duration such as 25s", clip(v)))
			return
		}
		wait = min(d, b.cfg.PollWait)
	}
	running, err := parseIDs(c.Query("running"))
	if err != nil {
		b.apiError(c, err)
		return
	}
	now := time.Now()
	if n, err := b.st.FailLostRCCommands(ctx, e.ID, running, now); err != nil {
		b.apiError(c, err)
		return
	} else if n > 0 {
		b.log.Warn("rc: running commands lost", "hrn", e.HRN, "count", n)
	}
	if err := b.st.TouchRCEnrollment(ctx, e.ID, now); err != nil {
		b.apiError(c, err)
		return
	}
	b.pollStarted(e.ID)
	defer b.pollEnded(e.ID)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		woken := b.wake.wait(e.HRN) // before the look, so that no notify is missed
		cmd, err := b.st.TakeRCCommand(ctx, e.ID, time.Now())
		if err == nil {
			w := wireCommand(cmd, e)
			if cmd.Type == proto.LoadImage && cmd.Multicast && b.mcast != nil {
				w.Multicast = b.joinMulticast(ctx, cmd, e)
			}
			env, err := proto.Sign(w, e.Secret)
			if err != nil {
				b.apiError(c, err)
				return
			}
			b.log.Info("rc: command sent", "hrn", e.HRN, "id", cmd.ID, "type", cmd.Type)
			c.JSON(http.StatusOK, env)
			return
		}
		if !errors.Is(err, store.ErrNotFound) {
			b.apiError(c, err)
			return
		}
		if b.cfg.pollWaits != nil {
			b.cfg.pollWaits(e.HRN)
		}
		select {
		case <-woken:
		case <-timer.C:
			c.Status(http.StatusNoContent)
			return
		case <-ctx.Done(): // the RC left, or the appliance is stopping
			c.Status(http.StatusNoContent)
			return
		}
	}
}

// joinMulticast puts the node into the multicast session of its load's
// image, nil if it cannot (the RC then fetches over HTTP).
func (b *Broker) joinMulticast(ctx context.Context, cmd store.RCCommand, e store.RCEnrollment) *proto.Multicast {
	m, err := b.mcast.join(ctx, cmd.Image, cmd.ImageSHA256, e.HRN)
	if err != nil {
		b.log.Info("imaging: no multicast, the node fetches over HTTP", "hrn", e.HRN, "image", cmd.Image, "err", err)
		return nil
	}
	ev := store.Event{HRN: e.HRN, At: time.Now(), Source: "rc", What: "image multicast",
		Detail: fmt.Sprintf("%s group %s session %d", cmd.Image, m.Group, m.Session)}
	if err := b.st.AddEvent(ctx, ev); err != nil {
		b.log.Error("rc: timeline", "hrn", e.HRN, "err", err)
	}
	return m
}

// wireCommand is the payload the RC gets for a command.
func wireCommand(c store.RCCommand, e store.RCEnrollment) proto.Command {
	return proto.Command{
		ID: c.ID, Enrollment: e.ID, HRN: e.HRN, Type: c.Type,
		Command: c.Command, Args: c.Args, Timeout: c.Timeout,
		Image: c.Image, Disk: c.Disk, SHA256: c.ImageSHA256, Size: c.ImageSize,
		IssuedAt: time.Now().UTC(),
	}
}

// report records what the RC says about one of its commands.
func (b *Broker) report(c *gin.Context) {
	ctx := c.Request.Context()
	e, ok := b.authenticate(c)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		b.apiError(c, apierr.BadRequest("command id %q: not a number", clip(c.Param("id"))))
		return
	}
	var r proto.Report
	if err := readJSON(c, maxReportBody, &r); err != nil {
		b.apiError(c, err)
		return
	}
	r.Reply, r.Error, r.SHA256 = clip(r.Reply), textclip.Text(r.Error, 4096), clip(r.SHA256)
	now := time.Now()
	if err := b.st.ReportRCCommand(ctx, id, e.ID, r, b.cfg.MaxOutput, now); err != nil {
		b.apiError(c, err)
		return
	}
	if err := b.st.TouchRCEnrollment(ctx, e.ID, now); err != nil {
		b.log.Error("rc: touch", "hrn", e.HRN, "err", err)
	}
	if proto.Terminal(r.State) {
		b.finished(c, e, id, r, now)
	}
	c.Status(http.StatusNoContent)
}

// finished logs a command's end, and puts the ones that change the node
// (imaging, reboot) on its timeline.
func (b *Broker) finished(c *gin.Context, e store.RCEnrollment, id int64, r proto.Report, now time.Time) {
	cmd, err := b.st.RCCommand(c.Request.Context(), id)
	if err != nil {
		b.log.Error("rc: finished command", "id", id, "err", err)
		return
	}
	level := slogLevel(r.State)
	b.log.Log(c.Request.Context(), level, "rc: command "+r.State, "hrn", e.HRN, "id", id, "type", cmd.Type,
		"reply", cmd.Reply, "error", cmd.Error)
	var what string
	switch cmd.Type {
	case proto.LoadImage:
		what = "image load " + r.State
	case proto.SaveImage:
		what = "image save " + r.State
	case proto.Reboot, proto.Poweroff:
		what = strings.ToLower(cmd.Type) + " " + r.State
	default:
		return
	}
	detail := cmd.Image
	if cmd.Disk != "" {
		detail += " " + cmd.Disk
	}
	if cmd.Error != "" {
		detail += ": " + cmd.Error
	}
	if err := b.st.AddEvent(c.Request.Context(), store.Event{HRN: e.HRN, At: now, Source: "rc", What: what, Detail: strings.TrimSpace(detail)}); err != nil {
		b.log.Error("rc: timeline", "hrn", e.HRN, "err", err)
	}
}
