#!/usr/bin/env bash
# Makes sure a Go toolchain new enough for go.mod is on PATH. Debian 12's
# golang-go (1.19) is too old, so a missing or old Go is replaced by the
# toolchain module that the Go module proxy serves (what GOTOOLCHAIN does).
set -euo pipefail
want=$(awk '/^go /{print $2; exit}' "$(dirname "$0")/../go.mod")
export PATH=/usr/local/go/bin:$PATH
have=$(go env GOVERSION 2>/dev/null | sed 's/^go//' || true)
newer() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]; }
if [ -n "$have" ] && newer "$have" "$want"; then
  exit 0
fi
echo "ensure-go: installing Go $want (found: ${have:-none})" >&2
command -v curl >/dev/null && command -v unzip >/dev/null || { apt-get update -qq; apt-get install -y -qq curl unzip; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
proxy=${GOPROXY:-https://proxy.golang.org}; proxy=${proxy%%,*}
curl -fsSL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/v0.0.1-go$want.linux-amd64.zip"
unzip -q "$tmp/go.zip" -d "$tmp"
rm -rf /usr/local/go
mv "$tmp/golang.org/toolchain@v0.0.1-go$want.linux-amd64" /usr/local/go
chmod -R a+rX /usr/local/go
find /usr/local/go/bin /usr/local/go/pkg/tool -type f -exec chmod +x {} +
/usr/local/go/bin/go version
