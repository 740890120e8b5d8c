package am

import (
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// apiCreateToken makes a token and answers it, the one time it is shown;
// the database keeps its hash.
func (s *Server) apiCreateToken(c *gin.Context) {
	var req apiv1.TokenRequest
	if !decodeBody(c, &req) {
		return
	}
	now := time.Now()
	if err := checkName("name", req.Name); err != nil {
		apierr.Write(c, err)
		return
	}
	if r := apierr.Role(req.Role); r.Rank() == 0 {
		apierr.Write(c, apierr.BadRequest("role %q: want viewer, operator or admin", textclip.Text(req.Role, 64)))
		return
	}
	if !req.Expires.IsZero() && !req.Expires.After(now) {
		apierr.Write(c, apierr.BadRequest("expires %s: in the past", req.Expires.UTC().Format(time.RFC3339)))
		return
	}
	secret, hash, err := apitoken.New()
	if err != nil {
		apierr.Write(c, err)
		return
	}
	t := store.Token{Name: req.Name, Role: req.Role, Created: now, Expires: req.Expires}
	if err := s.inv.CreateToken(c.Request.Context(), t, hash); err != nil {
		apierr.Write(c, err)
		return
	}
	c.JSON(http.StatusCreated, apiv1.TokenCreated{Token: apiToken(t), Secret: secret})
}

func (s *Server) apiTokens(c *gin.Context) {
	ts, err := s.inv.Tokens(c.Request.Context())
	writeList(c, ts, err, apiToken)
}

func (s *Server) apiRevokeToken(c *gin.Context) {
	name := c.Param("name")
	if err := checkName("name", name); err != nil {
		apierr.Write(c, err)
		return
	}
	writeDone(c, s.inv.RevokeToken(c.Request.Context(), name, time.Now()))
}

// apiToken is a stored token as the API lists it.
func apiToken(t store.Token) apiv1.Token {
	return apiv1.Token{Name: t.Name, Role: t.Role, Created: t.Created, Expires: t.Expires, Revoked: t.Revoked}
}
