//go:build nodebin

package nodebin

import "embed"

const embedded = true

// files are the programs go generate compiled into bin/.
//
//go:embed bin/orbit-init bin/orbit-rc bin/sshd bin/gosh
var files embed.FS
