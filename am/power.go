package am

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/power"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// powerDo runs a power action on a node: 409 if the node has no (usable)
// power driver, 502 if the driver (QEMU, the BMC) fails.
func (s *Server) powerDo(ctx context.Context, n inventory.Node, a power.Action) (power.State, error) {
	d, err := power.Parse(n.Power)
	if err != nil {
		if errors.Is(err, power.ErrNoDriver) {
			return "", apierr.New(http.StatusConflict, "node %s has no power driver: set power: %s", n.HRN, s.editHint())
		}
		return "", apierr.New(http.StatusConflict, "node %s: %v", n.HRN, err)
	}
	st, err := d.Do(ctx, a)
	if a != power.Status {
		// On the node's timeline: a reset explains the boot that follows.
		detail := "state=" + string(st)
		if err != nil {
			detail = "failed: " + err.Error()
		}
		if err := s.inv.AddEvent(context.WithoutCancel(ctx), store.Event{HRN: n.HRN, At: time.Now().UTC(), Source: "power", What: string(a), Detail: detail}); err != nil {
			s.log.Warn("power: recording the event", "hrn", n.HRN, "err", err)
		}
	}
	if err != nil {
		s.log.Warn("power", "hrn", n.HRN, "action", string(a), "err", err)
		return "", apierr.New(http.StatusBadGateway, "%v", err)
	}
	if a != power.Status {
		s.log.Info("power", "hrn", n.HRN, "action", string(a), "state", string(st))
	}
	return st, nil
}

func (s *Server) apiPower(c *gin.Context) {
	var req apiv1.PowerRequest
	n, ok := s.nodeParam(c)
	if !ok || !decodeBody(c, &req) {
		return
	}
	a, err := power.ParseAction(req.Action)
	if err != nil {
		apierr.Write(c, apierr.BadRequest("%v", err))
		return
	}
	st, err := s.powerDo(c.Request.Context(), n, a)
	writeJSON(c, http.StatusOK, apiv1.PowerReply{HRN: n.HRN, Action: string(a), State: string(st)}, err)
}

// omfPowerStatus is what /cmc/status answers in <STATUS>.
var omfPowerStatus = map[power.State]string{power.StateOn: "POWERON", power.StateOff: "POWEROFF", power.StateUnknown: "UNKNOWN"}

// omfPower handles /cmc/<action>?hrn=&domain=: "OK" (text/plain) as OMF
// answered a true result, and for status
// <NODE_STATUS><STATUS>POWERON|POWEROFF|UNKNOWN</STATUS></NODE_STATUS>.
func (s *Server) omfPower(a power.Action) func(*gin.Context, *omfMethod, map[string]string) error {
	return func(c *gin.Context, _ *omfMethod, p map[string]string) error {
		err := checkName("hrn", p["hrn"])
		if err == nil {
			err = checkName("domain", p["domain"])
		}
		if err != nil {
			return err
		}
		n, err := s.inv.LookupNode(c.Request.Context(), p["domain"], p["hrn"])
		if err != nil {
			return err
		}
		apierr.SetTarget(c, n.HRN)
		st, err := s.powerDo(c.Request.Context(), n, a)
		if err != nil {
			return err
		}
		if a == power.Status {
			c.Data(http.StatusOK, "text/xml", fmt.Appendf(nil, "<NODE_STATUS><STATUS>%s</STATUS></NODE_STATUS>", omfPowerStatus[st]))
			return nil
		}
		c.Data(http.StatusOK, "text/plain", []byte("OK"))
		return nil
	}
}
