# netboot appliance. `make demo` and `make test` install what they need on
# a fresh Debian 12 machine (as root) and are safe to run again.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
BIN := bin
# Debian packages the tests drive as real peers (prometheus: its promtool
# checks /metrics; udpcast and zstd: bench/imaging's small run; chromium:
# the web view's browser tests).
TEST_PACKAGES := tftp-hpa atftp curl dnsmasq-base util-linux iproute2 busybox isc-dhcp-relay udpcast zstd ethtool \
	qemu-system-x86 qemu-utils ipxe-qemu pxelinux syslinux-common ovmf shim-signed grub-efi-amd64-signed osslsigncode mtools nftables \
	prometheus chromium
BENCH_PACKAGES := tftpd-hpa tftp-hpa wrk dnsmasq-base kea-dhcp4-server busybox udpcast zstd curl ethtool \
	qemu-system-x86 ipxe-qemu pxelinux syslinux-common ovmf shim-signed grub-efi-amd64-signed

.PHONY: all build install deb test fuzz mutate demo demo-api lint bench go-toolchain test-deps bench-deps clean kernel

all: build

go-toolchain:
	@scripts/ensure-go.sh

# nbctl carries the node's programs (orbit-init, orbit-rc and the debug
# shell), compiled once by go generate in initramfs/nodebin as a build from
# the source tree compiles them, and embedded by the nodebin build tag: the
# installed nbctl builds images without the sources or Go.
build: go-toolchain
	$(GO) generate ./initramfs/nodebin
	$(GO) build -tags nodebin -trimpath -o $(BIN)/ ./cmd/...

# Where make install puts things (scripts/install.sh): binaries under
# PREFIX, the systemd unit in UNITDIR, the example config in
# SYSCONFDIR/netboot unless there already; all below DESTDIR.
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" UNITDIR="$(UNITDIR)" BIN="$(BIN)" scripts/install.sh

# The Debian package, $(BIN)/netboot_VERSION_amd64.deb: make install's tree
# with PREFIX=/usr and the unit in /usr/lib/systemd/system, nbctl's bash
# completion, conffiles in /etc/netboot (scripts/mkdeb, internal/debpkg).
# VERSION defaults to git describe's (vX.Y.Z tags), else 0.0.0+gitDATE.HASH.
VERSION ?=
deb: build
	$(GO) run ./scripts/mkdeb -bin $(BIN) -out $(BIN)$(if $(VERSION), -version "$(VERSION)")

test-deps:
	@scripts/ensure-packages.sh $(TEST_PACKAGES)

# Every test, including the end-to-end ones against real netbootd
# processes and QEMU nodes; then both demos, once, as a user would run them.
test: go-toolchain test-deps kernel lint
	WEBUI_ARTIFACTS=$(CURDIR)/.cache/webui-artifacts $(GO) test -count=1 -timeout 40m ./...
	scripts/fuzz.sh $(TEST_FUZZTIME)
	DEMO_ONCE=1 scripts/demo.sh > /dev/null
	DEMO_ONCE=1 $(GO) run ./qemu-tests/demo > /dev/null

# Every fuzz target (scripts/fuzz.sh lists them) for FUZZTIME each; make
# test runs them for TEST_FUZZTIME each.
FUZZTIME ?= 5m
TEST_FUZZTIME ?= 10s
fuzz: go-toolchain
	scripts/fuzz.sh $(FUZZTIME)

# The mutation check: every breakage on internal/mutate's list must make
# its tests fail (go run ./bench/mutate -list shows the list).
mutate: go-toolchain test-deps
	$(GO) run ./bench/mutate

# The current Debian kernel package, unpacked (never installed) into .cache/kernel.
kernel:
	@scripts/fetch-kernel.sh .cache/kernel > /dev/null

# gofmt, go vet and golangci-lint (.golangci.yml; version in scripts/lint.sh).
lint: go-toolchain
	scripts/lint.sh

# The main job: a virtual testbed whose QEMU nodes netboot from netbootd.
demo: build test-deps kernel
	$(GO) run ./qemu-tests/demo

# The AM alone on loopback, driven with OMF calls and nbctl.
demo-api: build
	scripts/demo.sh

bench-deps:
	@scripts/ensure-packages.sh $(BENCH_PACKAGES)

bench: build bench-deps
	$(GO) run ./bench/am --netbootd $(BIN)/netbootd
	$(GO) run ./bench/dhcp -trials 5
	$(GO) run ./bench/tftp
	$(GO) run ./bench/httpboot --netbootd $(BIN)/netbootd
	$(GO) run ./bench/rc -size 1GiB -runs 3
	$(GO) run ./bench/imaging -size 1GiB -nodes 1,5,20
	$(GO) run ./bench/boot

clean:
	rm -rf $(BIN) .cache/demo initramfs/nodebin/bin
