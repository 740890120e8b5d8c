#!/usr/bin/env bash
# Copies Debian's signed UEFI network boot chain into a TFTP root, where
# netbootd's defaults (dhcp.bootfile_efi: shimx64.efi) and the firmware
# look for it: shim (package shim-signed) as shimx64.efi and Debian's
# signed network GRUB (package grub-efi-amd64-signed, grubnetx64) as
# grubx64.efi beside it, the name shim always asks for in its own
# directory. GRUB then reads grub/grub.cfg, which netbootd writes.
#
#   scripts/install-uefi-loaders.sh TFTP_ROOT
#
# Idempotent: a file already there with the same content is left alone;
# a changed one is replaced atomically (copy to a temporary name, rename),
# so a node booting meanwhile reads the old file or the new, never half.
set -euo pipefail
SHIM=${SHIM:-/usr/lib/shim/shimx64.efi.signed}
GRUB=${GRUB:-/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed}
if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: $0 TFTP_ROOT (an existing directory)" >&2
  exit 2
fi
root=$1
for f in "$SHIM" "$GRUB"; do
  if [ ! -r "$f" ]; then
    echo "install-uefi-loaders: $f missing (apt-get install shim-signed grub-efi-amd64-signed)" >&2
    exit 1
  fi
done
install_one() { # src dst
  if cmp -s "$1" "$2"; then
    return
  fi
  # Named like netbootd's own temporary files, which it clears at start.
  tmp=$(mktemp "$(dirname "$2")/.$(basename "$2").tmp-XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  cp "$1" "$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$2"
  echo "install-uefi-loaders: $2 <- $1"
}
install_one "$SHIM" "$root/shimx64.efi"
install_one "$GRUB" "$root/grubx64.efi"
