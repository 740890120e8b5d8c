#!/usr/bin/env bash
# The AM demo (make demo-api): netbootd starts with examples/demo.yaml and
# examples/inventory.yaml on loopback, and nbctl and an EC's OMF calls drive
# it while the demo shows what changes on disk. Every call and every change
# it shows is checked: a failed call or a wrong outcome stops it with a
# message and a non-zero status (make test runs it).
# DEMO_ONCE=1 exits at the end instead of waiting for Ctrl-C; it then runs in
# a directory and on a port of its own, so that runs side by side do not meet.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
go build -o bin/ ./cmd/...

fail() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

if [ "${DEMO_ONCE:-}" = 1 ]; then
  mkdir -p .cache
  demo=$(mktemp -d "$PWD/.cache/demo-once.XXXXXX")
  cleanup_dir=$demo
else
  demo=$PWD/.cache/demo
  cleanup_dir=
  rm -rf "$demo"
fi
cfgdir=$demo/tftpboot/pxelinux.cfg
mkdir -p "$cfgdir"
for img in orbit-2.0.0 orbit-2.0.1-test; do
  printf 'DEFAULT boel\nLABEL boel\nKERNEL linux-orbit-pxe\nAPPEND initrd=initramfs-%s.gz console=tty0 console=ttyS0,115200\nIPAPPEND 2\n' "$img" \
    > "$cfgdir/$img"
done
# Port 5054 for a person at the terminal if it is free; otherwise (and
# always under DEMO_ONCE) netbootd takes a free port and names it in its ready file.
listen=127.0.0.1:5054
if [ "${DEMO_ONCE:-}" = 1 ] || (exec 3<>/dev/tcp/127.0.0.1/5054) 2>/dev/null; then
  listen=127.0.0.1:0
fi
sed -e "s|127.0.0.1:5054|$listen|" -e "s|\.cache/demo|$demo|g" examples/demo.yaml > "$demo/demo.yaml"

bin/netbootd --config "$demo/demo.yaml" --ready-file "$demo/ready.json" 2> "$demo/netbootd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; [ -z "$cleanup_dir" ] || rm -rf "$cleanup_dir"' EXIT
# netbootd writes the address it bound to its ready file once it serves;
# 60 s means hung.
addr=
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
  kill -0 $pid 2>/dev/null || { cat "$demo/netbootd.log" >&2; fail "netbootd exited at start"; }
  addr=$(sed -n 's/.*"http":"\([0-9.:]*\)".*/\1/p' "$demo/ready.json" 2>/dev/null || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$demo/netbootd.log" >&2; fail "netbootd did not serve within 60 s"; }
export NBCTL_SERVER=http://$addr
# netbootd made an admin token at its first start; nbctl reads it from
# NBCTL_TOKEN (the OMF calls below come from loopback, which omf.allow admits).
NBCTL_TOKEN=$(cat "$demo/state/admin.token") || fail "no admin token in $demo/state"
export NBCTL_TOKEN

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run()  { printf '$ %s\n' "$*"; "$@" || fail "$* (exit status $?)"; }
# call URL WANT: a GET that must answer HTTP status WANT; prints the body.
call() {
  printf "$ curl '%s'\n" "$1"
  local status
  status=$(curl -sS -o "$demo/body" -w '%{http_code}' "$1") || fail "curl $1"
  cat "$demo/body"; echo
  [ "$status" = "$2" ] || fail "GET $1: status $status, want $2"
}
# body_is WANT: the last call's body is exactly WANT.
body_is() { [ "$(cat "$demo/body")" = "$1" ] || fail "body $(cat "$demo/body"), want $1"; }
# link NAME TARGET: pxelinux.cfg/NAME is a link to TARGET; link NAME: there is none.
link() {
  if [ $# = 1 ]; then
    [ ! -e "$cfgdir/$1" ] && [ ! -L "$cfgdir/$1" ] || fail "pxelinux.cfg/$1 exists, want none"
  else
    [ "$(readlink "$cfgdir/$1" 2>/dev/null)" = "$2" ] || fail "pxelinux.cfg/$1 -> '$(readlink "$cfgdir/$1" 2>/dev/null)', want $2"
  fi
}
# has TEXT CMD...: CMD's output contains TEXT.
has() {
  local want=$1 out; shift
  printf '$ %s\n' "$*"
  out=$("$@") || fail "$* (exit status $?)"
  printf '%s\n' "$out"
  grep -qF -- "$want" <<< "$out" || fail "$*: output lacks '$want'"
}

step "netbootd is up at $NBCTL_SERVER; the inventory was seeded from examples/inventory.yaml"
has "node1-1.sb8.orbit-lab.org" bin/nbctl nodes --domain sb8
run bin/nbctl testbeds
step "The EC asks the PXE service, as OMF 5.4 did, to netboot two nodes"
call "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8.orbit-lab.org,node1-2.sb8.orbit-lab.org" 200
step "pxelinux will now find each node's config by its IP in hex"
run ls -l "$cfgdir/"
link 0A120101 ./orbit-2.0.0
link 0A120102 ./orbit-2.0.0
has "0A120102" bin/nbctl boot list
step "The inventory answers the EC as OMF's did"
call "$NBCTL_SERVER/inventory/getControlIP?hrn=node1-2.sb8.orbit-lab.org&domain=sb8" 200
body_is "<CONTROL_IP>10.18.1.2</CONTROL_IP>"
call "$NBCTL_SERVER/inventory/getDefaultDisk?hrn=node1-2.sb8.orbit-lab.org&domain=sb8" 200
body_is "<disk>/dev/sda</disk>"
step "Bad requests change nothing and say why"
call "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node1-1.sb8.orbit-lab.org,node9-9&imgName=orbit-2.0.1-test" 404
link 0A120101 ./orbit-2.0.0
call "$NBCTL_SERVER/pxe/setBootImageNS?domain=sb8&ns=node2-1.sb8.orbit-lab.org&imgName=../../etc/passwd" 400
link 0A120201
step "An operator uses nbctl: a test image for 30 s on one grid node, then clears the EC's links"
run bin/nbctl boot set --image orbit-2.0.1-test --lifetime 30s node1-3.grid.orbit-lab.org
link 0A0A0103 ./orbit-2.0.1-test
run bin/nbctl boot clear node1-1.sb8.orbit-lab.org node1-2.sb8.orbit-lab.org
link 0A120101
link 0A120102
has "node1-3.grid.orbit-lab.org" bin/nbctl boot list
run ls -l "$cfgdir/"
step "The inventory, exported in its seed format"
has "hrn: node2-1.sb8.orbit-lab.org" bin/nbctl inventory export
step "Each API call needs a token of its role: a viewer's reads, and is refused a change"
printf '$ bin/nbctl token create --name demo-viewer --role viewer\n'
viewer=$(bin/nbctl token create --name demo-viewer --role viewer) || fail "token create"
has "demo-viewer" bin/nbctl token list
printf '$ NBCTL_TOKEN=<the viewer token> bin/nbctl boot clear node1-3.grid.orbit-lab.org\n'
out=$(NBCTL_TOKEN=$viewer bin/nbctl boot clear node1-3.grid.orbit-lab.org 2>&1) && fail "a viewer cleared a boot link"
printf '%s\n' "$out"
grep -qF "needs operator" <<< "$out" || fail "the refusal does not say which role: $out"
link 0A0A0103 ./orbit-2.0.1-test
if [ "${DEMO_ONCE:-}" = 1 ]; then
  step "Done (DEMO_ONCE=1): every call answered and every change checked."
  exit 0
fi
step "netbootd keeps running at $NBCTL_SERVER (log: $demo/netbootd.log). Try: NBCTL_SERVER=$NBCTL_SERVER NBCTL_TOKEN=\$(cat $demo/state/admin.token) bin/nbctl boot list. Ctrl-C stops it."
wait $pid
