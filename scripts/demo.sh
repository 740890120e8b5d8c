#!/usr/bin/env bash
# The demo: today it runs the appliance core only. netbootd starts with
# examples/demo.yaml and examples/inventory.yaml on loopback, and nbctl and
# an EC's OMF calls drive it while the demo shows what changes on disk.
# (Netbooting QEMU nodes joins the demo when the QEMU step lands.)
# DEMO_ONCE=1 exits at the end instead of waiting for Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
go build -o bin/ ./cmd/...

demo=.cache/demo
rm -rf "$demo"
mkdir -p "$demo/tftpboot/pxelinux.cfg"
for img in orbit-2.0.0 orbit-2.0.1-test; do
  printf 'DEFAULT boel\nLABEL boel\nKERNEL linux-orbit-pxe\nAPPEND initrd=initramfs-%s.gz console=tty0 console=ttyS0,115200\nIPAPPEND 2\n' "$img" \
    > "$demo/tftpboot/pxelinux.cfg/$img"
done
config=examples/demo.yaml
port=5054
if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
  # Port 5054 is taken: run on a free one instead.
  for port in $(seq 15054 15154); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || break
  done
  sed "s/127.0.0.1:5054/127.0.0.1:$port/" examples/demo.yaml > "$demo/demo.yaml"
  config=$demo/demo.yaml
fi
export NBCTL_SERVER=http://127.0.0.1:$port

bin/netbootd --config "$config" 2> "$demo/netbootd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -fs "$NBCTL_SERVER/api/v1/testbeds" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$demo/netbootd.log"; exit 1; }
  sleep 0.1
done

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@"; }

step "netbootd is up at $NBCTL_SERVER; the inventory was seeded from examples/inventory.yaml"
run bin/nbctl testbeds
run bin/nbctl nodes --domain sb8
step "The EC asks the PXE service, as OMF 5.4 did, to netboot two nodes"
run curl -s "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8.orbit-lab.org,node1-2.sb8.orbit-lab.org"; echo
step "pxelinux will now find each node's config by its IP in hex"
run ls -l "$demo/tftpboot/pxelinux.cfg/"
run bin/nbctl boot list
step "The inventory answers the EC as OMF's did"
run curl -s "$NBCTL_SERVER/inventory/getControlIP?hrn=node1-2.sb8.orbit-lab.org&domain=sb8"; echo
run curl -s "$NBCTL_SERVER/inventory/getDefaultDisk?hrn=node1-2.sb8.orbit-lab.org&domain=sb8"; echo
step "Bad requests change nothing and say why"
run curl -s "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8.orbit-lab.org,node9-9&imgName=orbit-2.0.1-test" || true
run curl -s "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node2-1.sb8.orbit-lab.org&imgName=../../etc/passwd" || true
step "An operator uses nbctl: a test image for 30 s on one grid node, then clears the EC's links"
run bin/nbctl boot set --image orbit-2.0.1-test --lifetime 30s node1-3.grid.orbit-lab.org
run bin/nbctl boot clear node1-1.sb8.orbit-lab.org node1-2.sb8.orbit-lab.org
run bin/nbctl boot list
run ls -l "$demo/tftpboot/pxelinux.cfg/"
step "The inventory, exported in its seed format"
run bin/nbctl inventory export
if [ "${DEMO_ONCE:-}" = 1 ]; then
  step "Done (DEMO_ONCE=1)."
  exit 0
fi
step "netbootd keeps running at $NBCTL_SERVER (log: $demo/netbootd.log). Try: NBCTL_SERVER=$NBCTL_SERVER bin/nbctl boot list. Ctrl-C stops it."
wait $pid
