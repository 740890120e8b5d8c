package am

import (
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/lograte"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/sourcelimit"
)

// Limits are the AM's per-source abuse limits; a zero Limit is off.
type Limits struct {
	Enroll   sourcelimit.Limit // RC enrollments
	AuthFail sourcelimit.Limit // requests answered 401
	OMF      sourcelimit.Limit // OMF calls
}

// maxLimitedSources bounds each limiter's table (see sourcelimit), and
// limitLogEvery how often a source still limited is logged again.
const (
	maxLimitedSources = 65536
	limitLogEvery     = time.Minute
)

// enrollRoute is the RC's enrollment, the one call a node makes unknown.
const enrollRoute = "/api/v1/rc/enroll"

// limiters are the AM's per-source limiters and the log of who hit them.
type limiters struct {
	enroll, authFail, omf *sourcelimit.Limiter
	log                   *lograte.Limiter[string]
}

func newLimiters(l Limits) *limiters {
	return &limiters{
		enroll:   sourcelimit.New(l.Enroll, maxLimitedSources),
		authFail: sourcelimit.New(l.AuthFail, maxLimitedSources),
		omf:      sourcelimit.New(l.OMF, maxLimitedSources),
		log:      lograte.New[string](limitLogEvery, maxLimitedSources, ""),
	}
}

// limit refuses, with 429 and Retry-After, a source that has failed
// authentication too often (before the guard looks at it: a request
// answered 401 counts, whoever answered it), and one that enrolls or
// calls the OMF services too often. It runs inside the audit, which
// records the refusals of mutations, and outside the guard.
func (s *Server) limit(c *gin.Context) {
	src := peer.Addr(c.Request)
	if !src.IsValid() {
		c.Next() // not over IP (a test's handler): nothing to key on
		return
	}
	route := c.FullPath()
	if blocked, retry := s.limits.authFail.Blocked(src); blocked {
		s.refuse(c, src, "failed authentications", retry)
		return
	}
	switch call, isOMF := s.omf[route]; {
	case route == enrollRoute:
		if ok, retry := s.limits.enroll.Allow(src); !ok {
			s.refuse(c, src, "enrollments", retry)
			return
		}
	case isOMF:
		if ok, retry := s.limits.omf.Allow(src); !ok {
			s.refuseOMF(c, call, src, retry)
			return
		}
	}
	c.Next()
	if c.Writer.Status() == http.StatusUnauthorized {
		s.limits.authFail.Count(src)
	}
}

// refuse answers 429 in the API's JSON.
func (s *Server) refuse(c *gin.Context, src netip.Addr, what string, retry time.Duration) {
	apierr.Write(c, s.limited(c, src, what, retry))
}

// refuseOMF answers 429 in the OMF service's own XML.
func (s *Server) refuseOMF(c *gin.Context, call omfCall, src netip.Addr, retry time.Duration) {
	err := s.limited(c, src, "OMF calls", retry)
	apierr.SetDetail(c, err.Error())
	call.fail(c, &call.method, err)
	c.Abort()
}

// limited sets Retry-After, logs the source once in a while, and returns
// the 429's error.
func (s *Server) limited(c *gin.Context, src netip.Addr, what string, retry time.Duration) error {
	secs := int(retry / time.Second)
	c.Header("Retry-After", strconv.Itoa(secs))
	if ok, held := s.limits.log.Allow(what + " " + src.String()); ok {
		s.log.Warn("source rate-limited", "client", src.String(), "too_many", what, "retry_after", retry,
			"refused_since_last_line", held)
	}
	return apierr.New(http.StatusTooManyRequests, "too many %s from %s: try again in %d s", what, src, secs)
}
