// Package imagename holds the naming rules of the appliance's two kinds of
// image, one function each, so that the tool that makes an image, the
// server that stores or links it and the client that asks for it agree:
//
//   - a PXE image (nbctl image build, the inventory's pxe_image, a boot
//     link) is a file of the TFTP root and of pxelinux.cfg/, named in a
//     pxelinux config: CheckPXE;
//   - a disk image (nbctl disk, LOAD_IMAGE, SAVE_IMAGE) is a file of the RC
//     broker's image directory: ValidDisk.
//
// Both are stricter than inventory.ValidName, the rule for hrns and domains.
package imagename

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrBadPXE is returned (wrapped) for a PXE image name that cannot be used.
var ErrBadPXE = errors.New("bad image name")

var (
	pxeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	// Names pxelinux itself looks up in pxelinux.cfg/: an image must never
	// shadow one (upper-case hex IP prefixes, 01-<mac>, default).
	hexRE = regexp.MustCompile(`^[0-9A-F]{1,8}$`)
	macRE = regexp.MustCompile(`^01-`)
)

// CheckPXE reports whether name can be a PXE image's name: letters,
// digits, '.', '_' and '-', at most 64, starting with a letter or digit,
// and none of the names pxelinux looks up by itself ("default", upper-case
// hex, "01-...").
func CheckPXE(name string) error {
	switch {
	case !pxeRE.MatchString(name):
		return fmt.Errorf("%w %q: use letters, digits, '.', '_', '-' (at most 64, not starting with '.' or '-')", ErrBadPXE, name)
	case name == "default", hexRE.MatchString(name), macRE.MatchString(name):
		return fmt.Errorf("%w %q: pxelinux looks this name up by itself", ErrBadPXE, name)
	}
	return nil
}

// DiskRule says what ValidDisk accepts, for error messages.
const DiskRule = "want letters, digits and . _ : @ + - (no '/', no '..', at most 128)"

var diskRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$`)

// ValidDisk reports whether name can be a disk image's name: it becomes a
// file name in the broker's directory beside the image's checksum file
// (NAME.EXT.sha256) and its upload temp files (.upload-*), so it can
// neither escape the directory nor look like one of those.
func ValidDisk(name string) bool {
	return diskRE.MatchString(name) && !strings.Contains(name, "..") && !strings.HasSuffix(name, ".sha256")
}
