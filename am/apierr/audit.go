package apierr

import "github.com/gin-gonic/gin"

// Where a handler notes, for the audit, what it acted on and why it
// failed: the audit reads them after the request, whoever answered it.
const (
	targetKey = "netboot.audit.target"
	detailKey = "netboot.audit.detail"
)

// SetTarget names what the request acted on, where the path alone does
// not say it: the HRN a host name resolved to, an OMF node set, the node
// an enrollment's MACs belong to.
func SetTarget(c *gin.Context, target string) { c.Set(targetKey, target) }

// TargetOf is what SetTarget recorded, or "".
func TargetOf(c *gin.Context) string { return c.GetString(targetKey) }

// SetDetail notes a short word on how the request ended, such as the
// message of its error; Write notes its error itself.
func SetDetail(c *gin.Context, detail string) { c.Set(detailKey, detail) }

// DetailOf is what SetDetail recorded, or "".
func DetailOf(c *gin.Context) string { return c.GetString(detailKey) }
