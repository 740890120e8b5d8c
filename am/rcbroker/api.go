package rcbroker

import (
	"errors"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/httpbody"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/rc/proto"
)

const (
	maxCommandBody = 1 << 20
	maxCommandText = 64 << 10 // an EXECUTE command line
)

func slogLevel(state string) slog.Level {
	if state == proto.StateDone {
		return slog.LevelInfo
	}
	return slog.LevelWarn
}

// node is the existing node that the path names, as the AM's node routes
// read it: by HRN, or by a host name unique in the inventory or in
// ?domain= (apierr.NodeRef).
func (b *Broker) node(c *gin.Context) (inventory.Node, bool) {
	n, err := apierr.LookupNode(c, b.st.LookupNode)
	if err != nil {
		b.apiError(c, err)
		return inventory.Node{}, false
	}
	apierr.SetTarget(c, n.HRN)
	return n, true
}

// rcState is what an enrollment's RC is doing now.
func (b *Broker) rcState(e store.RCEnrollment) string {
	wait := b.cfg.PollWait + min(b.cfg.PollWait, 5*time.Second)
	// After its acknowledgement the RC's open poll lingers until its
	// wait runs out (a node going down closes no connection), so only
	// being heard from a whole wait later says it stayed up.
	if e.Down != "" && !e.LastSeen.After(e.DownAt.Add(wait)) {
		if e.Down == proto.Poweroff {
			return proto.RCPoweredOff
		}
		return proto.RCRebooting
	}
	if b.isPolling(e.ID) || time.Since(e.LastSeen) < wait {
		return proto.RCOnline
	}
	return proto.RCOffline
}

func (b *Broker) rcStatus(e store.RCEnrollment) proto.RCStatus {
	enrolled, seen := e.EnrolledAt, e.LastSeen
	state := b.rcState(e)
	return proto.RCStatus{
		HRN:        e.HRN,
		Enrolled:   true,
		State:      state,
		Online:     state == proto.RCOnline,
		Enrollment: e.ID,
		EnrolledAt: &enrolled,
		LastSeen:   &seen,
		Image:      e.Image,
		Hostname:   e.Hostname,
		MACs:       e.Info.MACs,
		Addresses:  e.Info.Addresses,
		Kernel:     e.Info.Kernel,
		BootID:     e.BootID,
		Disks:      e.Info.Disks,
		Version:    e.Info.Version,
		Firmware:   e.Firmware,
		SecureBoot: e.SecureBoot,
	}
}

func (b *Broker) statusAll(c *gin.Context) {
	es, err := b.st.RCEnrollments(c.Request.Context())
	if err != nil {
		b.apiError(c, err)
		return
	}
	out := make([]proto.RCStatus, 0, len(es))
	for _, e := range es {
		out = append(out, b.rcStatus(e))
	}
	c.JSON(http.StatusOK, out)
}

func (b *Broker) status(c *gin.Context) {
	n, ok := b.node(c)
	if !ok {
		return
	}
	e, err := b.st.RCEnrollment(c.Request.Context(), n.HRN)
	if errors.Is(err, store.ErrNotFound) {
		c.JSON(http.StatusOK, proto.RCStatus{HRN: n.HRN, State: proto.RCNotEnrolled})
		return
	}
	if err != nil {
		b.apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, b.rcStatus(e))
}

// decodeStrict reads a bounded JSON body strictly.
func decodeStrict(c *gin.Context, limit int64, v any) error {
	if err := httpbody.JSON(c.Writer, c.Request, limit, v); err != nil {
		return apierr.BadBody(err)
	}
	return nil
}

// checkDisk refuses a disk that is not a clean absolute path.
func checkDisk(d string) error {
	if d == "" || !strings.HasPrefix(d, "/") || path.Clean(d) != d || strings.ContainsAny(d, "\x00\n") || len(d) > 4096 {
		return apierr.BadRequest("disk %q: want an absolute device path such as /dev/sda", clip(d))
	}
	return nil
}

// buildCommand checks a request against its type and makes the command to
// queue for node n.
func (b *Broker) buildCommand(req proto.CommandRequest, n inventory.Node) (store.RCCommand, error) {
	cmd := store.RCCommand{}
	cmd.HRN, cmd.Type = n.HRN, strings.ToUpper(req.Type)
	unexpected := func(fields ...string) error {
		for i := 0; i < len(fields); i += 2 {
			if fields[i+1] != "" {
				return apierr.BadRequest("%s takes no %s", cmd.Type, fields[i])
			}
		}
		return nil
	}
	args, multicast := "", ""
	if len(req.Args) > 0 {
		args = "x"
	}
	if req.Multicast {
		multicast = "x"
	}
	disk := func() error {
		cmd.Disk = req.Disk
		if cmd.Disk == "" {
			cmd.Disk = n.Disk
		}
		return checkDisk(cmd.Disk)
	}
	image := func() error {
		if req.Image == "" {
			return apierr.BadRequest("%s needs an image", cmd.Type)
		}
		if err := checkImageName(req.Image); err != nil {
			return err
		}
		cmd.Image = req.Image
		return nil
	}
	switch cmd.Type {
	case proto.Execute:
		if err := unexpected("image", req.Image, "disk", req.Disk, "multicast", multicast); err != nil {
			return cmd, err
		}
		if (req.Command == "") == (len(req.Args) == 0) {
			return cmd, apierr.BadRequest("EXECUTE needs either a command (run by /bin/sh -c) or args")
		}
		size := len(req.Command)
		for _, a := range req.Args {
			size += len(a) + 1
		}
		if size > maxCommandText || strings.Contains(req.Command, "\x00") || strings.Contains(strings.Join(req.Args, ""), "\x00") {
			return cmd, apierr.BadRequest("EXECUTE: the command is longer than %d bytes or holds a NUL", maxCommandText)
		}
		if req.Timeout != "" {
			if d, err := time.ParseDuration(req.Timeout); err != nil || d <= 0 {
				return cmd, apierr.BadRequest("timeout %q: want a positive duration such as 10m", clip(req.Timeout))
			}
		}
		cmd.Command, cmd.Args, cmd.Timeout = req.Command, req.Args, req.Timeout
	case proto.Enroll:
		if err := unexpected("command", req.Command, "args", args, "timeout", req.Timeout, "disk", req.Disk, "multicast", multicast); err != nil {
			return cmd, err
		}
		return cmd, image()
	case proto.LoadImage, proto.SaveImage:
		if err := unexpected("command", req.Command, "args", args, "timeout", req.Timeout); err != nil {
			return cmd, err
		}
		if err := image(); err != nil {
			return cmd, err
		}
		if err := disk(); err != nil {
			return cmd, err
		}
		if cmd.Type == proto.LoadImage {
			img, err := b.images.stat(cmd.Image)
			if err != nil {
				return cmd, err
			}
			cmd.ImageSHA256, cmd.ImageSize = img.SHA256, img.Size
			cmd.Multicast = req.Multicast
		} else if err := unexpected("multicast", multicast); err != nil {
			return cmd, err
		}
	case proto.Reboot, proto.Poweroff:
		if err := unexpected("command", req.Command, "args", args, "timeout", req.Timeout, "image", req.Image, "disk", req.Disk,
			"multicast", multicast); err != nil {
			return cmd, err
		}
	default:
		return cmd, apierr.BadRequest("type %q: want one of %s", clip(req.Type), strings.Join(proto.Types, ", "))
	}
	return cmd, nil
}

// addCommand queues a command for a node's enrolled RC: 202 and the
// command, whose state GET /commands/{id} follows.
func (b *Broker) addCommand(c *gin.Context) {
	ctx := c.Request.Context()
	n, ok := b.node(c)
	if !ok {
		return
	}
	var req proto.CommandRequest
	if err := decodeStrict(c, maxCommandBody, &req); err != nil {
		b.apiError(c, err)
		return
	}
	cmd, err := b.buildCommand(req, n)
	if err != nil {
		b.apiError(c, err)
		return
	}
	e, err := b.st.RCEnrollment(ctx, n.HRN)
	if errors.Is(err, store.ErrNotFound) {
		b.apiError(c, apierr.New(http.StatusConflict, "node %s has no enrolled RC: boot it into the orbit image first", n.HRN))
		return
	}
	if err != nil {
		b.apiError(c, err)
		return
	}
	cmd.Enrollment, cmd.CreatedAt = e.ID, time.Now().UTC()
	cmd, err = b.st.AddRCCommand(ctx, cmd)
	if err != nil {
		b.apiError(c, err)
		return
	}
	b.log.Info("rc: command queued", "hrn", n.HRN, "id", cmd.ID, "type", cmd.Type)
	b.wake.notify(n.HRN)
	c.Header("Location", "/api/v1/commands/"+strconv.FormatInt(cmd.ID, 10))
	c.JSON(http.StatusAccepted, cmd.CommandStatus)
}

func (b *Broker) nodeCommands(c *gin.Context) {
	n, ok := b.node(c)
	if !ok {
		return
	}
	limit := 50
	if v := c.Query("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l <= 0 || l > store.RCCommandsPerNode {
			b.apiError(c, apierr.BadRequest("limit %q: want 1 to %d", clip(v), store.RCCommandsPerNode))
			return
		}
		limit = l
	}
	cmds, err := b.st.RCCommands(c.Request.Context(), n.HRN, limit)
	b.answerCommands(c, cmds, err)
}

// answerCommands answers commands as the API shows them, or err.
func (b *Broker) answerCommands(c *gin.Context, cmds []store.RCCommand, err error) {
	if err != nil {
		b.apiError(c, err)
		return
	}
	out := make([]proto.CommandStatus, 0, len(cmds))
	for _, cmd := range cmds {
		out = append(out, cmd.CommandStatus)
	}
	c.JSON(http.StatusOK, out)
}

// activeCommands answers every node's queued and running commands, oldest
// first: the loads in progress with their progress, in one call for a
// whole grid.
func (b *Broker) activeCommands(c *gin.Context) {
	cmds, err := b.st.ActiveRCCommands(c.Request.Context())
	b.answerCommands(c, cmds, err)
}

func (b *Broker) command(c *gin.Context) {
	id, err := strconv.ParseInt(c.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		b.apiError(c, apierr.BadRequest("command id %q: not a number", clip(c.Param("id"))))
		return
	}
	cmd, err := b.st.RCCommand(c.Request.Context(), id)
	if err != nil {
		b.apiError(c, err)
		return
	}
	c.JSON(http.StatusOK, cmd.CommandStatus)
}
