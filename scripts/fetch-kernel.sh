#!/usr/bin/env bash
# Usage: scripts/fetch-kernel.sh CACHE_DIR
#
# Fetches the current Debian amd64 kernel package (the one the
# linux-image-amd64 meta-package depends on, e.g. linux-image-6.1.0-56-amd64)
# and unpacks it with dpkg-deb -x into CACHE_DIR/<package>/, which then holds
# boot/vmlinuz-<ver> and lib/modules/<ver>/. The kernel is never installed
# (installing one pulls in udev and initramfs-tools).
#
# Idempotent: when CACHE_DIR/<package>/ is already unpacked it only prints it.
# Runs apt-get update only when apt knows no linux-image-amd64 yet.
# Prints the unpacked directory (absolute) on stdout; everything else goes to
# stderr. Needs apt-get, apt-cache and dpkg-deb (Debian); apt-get update needs root.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 CACHE_DIR" >&2
  exit 2
fi
mkdir -p "$1"
cache=$(cd "$1" && pwd)

# resolve prints the versioned kernel package linux-image-amd64 depends on.
resolve() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }'
}

pkg=$(resolve || true)
if [ -z "$pkg" ]; then
  echo "fetch-kernel: apt knows no linux-image-amd64 yet; running apt-get update" >&2
  apt-get update -qq >&2
  pkg=$(resolve || true)
fi
if [ -z "$pkg" ]; then
  echo "fetch-kernel: cannot resolve linux-image-amd64 to a kernel package" >&2
  exit 1
fi

if [ -f "$cache/$pkg/.unpacked" ]; then
  echo "$cache/$pkg"
  exit 0
fi

work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
# apt-get download writes into the current directory; as root it drops to
# the _apt user, which must be able to write there.
chmod 0777 "$work"
echo "fetch-kernel: downloading $pkg" >&2
if ! (cd "$work" && apt-get download -qq "$pkg" >&2); then
  # Stale package lists name a version the mirror no longer has.
  echo "fetch-kernel: download failed; running apt-get update and trying again" >&2
  apt-get update -qq >&2
  pkg=$(resolve || true)
  [ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64" >&2; exit 1; }
  if [ -f "$cache/$pkg/.unpacked" ]; then
    echo "$cache/$pkg"
    exit 0
  fi
  (cd "$work" && apt-get download -qq "$pkg" >&2)
fi
dest="$cache/$pkg"
deb=$(ls "$work"/*.deb)
mkdir "$work/root"
dpkg-deb -x "$deb" "$work/root"
ls "$work"/root/boot/vmlinuz-* >/dev/null
touch "$work/root/.unpacked"
rm -rf "$dest"
mv "$work/root" "$dest"
chmod 0755 "$dest"
echo "$dest"
