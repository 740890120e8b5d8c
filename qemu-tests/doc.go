// Package qemutests holds the scenarios that boot QEMU nodes (TCG) against
// a real netbootd in a virtual testbed (package vtestbed): a node with no
// boot link boots its own disk (LOCALBOOT 0), and nodes with e1000 and
// virtio-net NICs netboot the orbit-pxe image after an OMF setBootImageNS.
// They run under plain `go test ./...` as root and skip, saying why,
// without root, /dev/net/tun, QEMU or the pxelinux files (under CI=true
// they fail instead).
package qemutests
