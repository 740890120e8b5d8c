//go:build !nodebin

package nodebin

import "embed"

const embedded = false

// files is empty: a build without the tag embeds nothing.
var files embed.FS
