#!/usr/bin/env bash
# make install: lays out the appliance under $DESTDIR (empty for the real
# system; a scratch root for packaging and tests):
#
#   $PREFIX/bin/netbootd, $PREFIX/bin/nbctl     from $BIN (make build: nbctl
#                                               carries the node's programs)
#   $PREFIX/lib/netboot/fetch-kernel.sh         the Debian kernel, unpacked
#   $UNITDIR/netbootd.service                   ExecStart under $PREFIX, --config
#                                               $SYSCONFDIR/netboot/netbootd.yaml
#   $SYSCONFDIR/netboot/netbootd.yaml           examples/, only when absent:
#   $SYSCONFDIR/netboot/inventory.yaml          an operator's files are never replaced
#                                               (/etc/netboot/ in them becomes $SYSCONFDIR/netboot/)
#
# Binaries, script and unit are replaced on every install. The unit makes
# /var/lib/netboot (StateDirectory=) when it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PREFIX:=/usr/local}" "${SYSCONFDIR:=/etc}" "${UNITDIR:=/etc/systemd/system}" "${BIN:=bin}"
DESTDIR=${DESTDIR:-}
for p in PREFIX SYSCONFDIR UNITDIR; do
  case ${!p} in
    /*) ;;
    *) echo "install: $p must be an absolute path, not '${!p}'" >&2; exit 2 ;;
  esac
done
for b in netbootd nbctl; do
  [ -x "$BIN/$b" ] || { echo "install: $BIN/$b missing: run make build" >&2; exit 1; }
done

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$PREFIX/lib/netboot" "$DESTDIR$UNITDIR" "$DESTDIR$SYSCONFDIR/netboot"
install -m 0755 "$BIN/netbootd" "$BIN/nbctl" "$DESTDIR$PREFIX/bin/"
install -m 0755 scripts/fetch-kernel.sh "$DESTDIR$PREFIX/lib/netboot/"
unit=$(mktemp "$DESTDIR$UNITDIR/.netbootd.service.XXXXXX")
trap 'rm -f "$unit"' EXIT
sed -e "s|^ExecStart=/usr/local/bin/netbootd --config /etc/netboot/netbootd.yaml\$|ExecStart=$PREFIX/bin/netbootd --config $SYSCONFDIR/netboot/netbootd.yaml|" \
  examples/netbootd.service > "$unit"
grep -qx "ExecStart=$PREFIX/bin/netbootd --config $SYSCONFDIR/netboot/netbootd.yaml" "$unit" ||
  { echo "install: examples/netbootd.service has no ExecStart line to rewrite" >&2; exit 1; }
chmod 0644 "$unit"
mv "$unit" "$DESTDIR$UNITDIR/netbootd.service"
echo "installed $DESTDIR$PREFIX/bin/netbootd $DESTDIR$PREFIX/bin/nbctl $DESTDIR$UNITDIR/netbootd.service"

for f in netbootd.yaml inventory.yaml; do
  dst="$DESTDIR$SYSCONFDIR/netboot/$f"
  if [ -e "$dst" ]; then
    echo "kept $dst (yours; the example is examples/$f)"
  else
    sed "s|/etc/netboot/|$SYSCONFDIR/netboot/|g" "examples/$f" > "$dst.new"
    chmod 0644 "$dst.new"
    mv "$dst.new" "$dst"
    echo "installed $dst (from examples/$f: edit it)"
  fi
done
