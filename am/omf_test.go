package am

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/store"
)

// TestOMFFail: each service answers a failure in its own XML, with the
// status the failure's kind maps to, except the inventory's "nothing
// found", which is a 200 as OMF's was; the message is escaped for XML.
func TestOMFFail(t *testing.T) {
	set := &omfMethod{name: "setBootImageNS", reply: "setBootImage"}
	ip := &omfMethod{name: "getControlIP", reply: "CONTROL_IP"}
	on := &omfMethod{name: "on"}
	tests := []struct {
		name       string
		fail       func(*gin.Context, *omfMethod, error)
		m          *omfMethod
		err        error
		wantStatus int
		wantBody   string
	}{
		{"pxe: not found", pxeFail, set, store.ErrNotFound, 404,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: not found</action></response>"},
		{"pxe: bad request, escaped", pxeFail, set, apierr.BadRequest("ns: %q is not a valid name", "<a&b>"), 400,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: ns: \"&lt;a&amp;b&gt;\" is not a valid name</action></response>"},
		{"pxe: conflict", pxeFail, set, apierr.New(http.StatusConflict, "no PXE image"), 409,
			"<response status='ERROR'><action service='pxe' name='setBootImage'>setBootImageNS: no PXE image</action></response>"},
		{"inventory: nothing found, in OMF's words", invFail, ip, &invNotFound{"Inventory has no control IP for HRN 'x' (domain: y)"}, 200,
			"<CONTROL_IP><ERROR>Inventory has no control IP for HRN 'x' (domain: y)</ERROR></CONTROL_IP>"},
		{"inventory: bad request", invFail, ip, apierr.BadRequest(`missing parameter "domain"`), 400,
			`<CONTROL_IP><ERROR>getControlIP: missing parameter "domain"</ERROR></CONTROL_IP>`},
		{"inventory: the database fails", invFail, ip, errors.New("disk I/O error"), 500,
			"<CONTROL_IP><ERROR>getControlIP: disk I/O error</ERROR></CONTROL_IP>"},
		{"cmc: no driver", cmcFail, on, apierr.New(http.StatusConflict, "node a has no power driver"), 409,
			"<ERROR>on: node a has no power driver</ERROR>"},
	}
	gin.SetMode(gin.ReleaseMode)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(rec)
			tt.fail(c, tt.m, tt.err)
			if rec.Code != tt.wantStatus || rec.Body.String() != tt.wantBody || rec.Header().Get("Content-Type") != "text/xml" {
				t.Errorf("%d %q (%s)\nwant %d %q (text/xml)", rec.Code, rec.Body.String(), rec.Header().Get("Content-Type"), tt.wantStatus, tt.wantBody)
			}
		})
	}
}
