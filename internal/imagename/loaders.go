package imagename

// The files one PXE image has for each boot loader, relative to the TFTP
// root, beside pxelinux.cfg/<image>: nbctl image build writes them from
// one description, pxelink links nodes to the GRUB one, the AM renders the
// iPXE one, and DHCP names the HTTP Boot one. One function each, so the
// writer and the readers agree.

// GrubDir is the directory of tftp_root Debian's network GRUB reads its
// configuration from (its prefix is fixed at (tftp,<next-server>)/grub).
const GrubDir = "grub"

// GrubConfig is an image's GRUB configuration, the template of the nodes'
// grub/grub.cfg-<HEX> links: grub/<image>.cfg.
func GrubConfig(image string) string { return GrubDir + "/" + image + ".cfg" }

// IPXEScript is an image's iPXE entry, the body of the script the AM
// serves to the nodes linked to it: ipxe/<image>.ipxe.
func IPXEScript(image string) string { return "ipxe/" + image + ".ipxe" }

// HTTPBootImage is the file UEFI HTTP Boot clients linked to an image
// boot: its RAM-disk image (a FAT image with shim, GRUB, kernel and
// initramfs), efi/<image>.img.
func HTTPBootImage(image string) string { return "efi/" + image + ".img" }
