package tftpd

import (
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/orbit-lab/netboot/internal/testenv"
)

// TestBlockSizeOnEthernetMTU checks the blksize the server grants on an
// interface with a 1500-byte MTU, as on a real Ethernet: loopback's 64 KiB
// MTU hides the library's per-interface clamp. It re-runs itself in a new
// network namespace (unshare -n) whose loopback has MTU 1500, so it needs
// root and skips without.
func TestBlockSizeOnEthernetMTU(t *testing.T) {
	if os.Getenv("TFTPD_TEST_IN_NETNS") == "1" {
		checkBlockSizes(t)
		return
	}
	testenv.Root(t, "a network namespace made with unshare -n")
	testenv.Programs(t, "Debian: util-linux, iproute2", "unshare", "ip")
	cmd := exec.Command("unshare", "-n", "sh", "-c", `ip link set lo up mtu 1500 && exec "$0" "$@"`,
		os.Args[0], "-test.run=^TestBlockSizeOnEthernetMTU$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "TFTPD_TEST_IN_NETNS=1")
	out, err := cmd.CombinedOutput()
	if err != nil && strings.HasPrefix(string(out), "unshare:") {
		testenv.Missing(t, "cannot make a network namespace here: %s", firstLine(out))
	}
	t.Logf("in a new network namespace:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestBlockSizeOnEthernetMTU") {
		t.Fatalf("in the namespace: %v", err)
	}
}

func checkBlockSizes(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil || lo.MTU != 1500 {
		t.Fatalf("lo: %v, MTU %d; want 1500", err, lo.MTU)
	}
	tr := newTree(t, map[string]int{"kernel": 300_000})
	tests := []struct {
		listen string
		client net.IP
		ask    int
		want   int
	}{
		// IPv4: 1500 - 20 (IP) - 8 (UDP) = 1472.
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 1408, 1408}, // pxelinux
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 1432, 1432}, // iPXE
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 1468, 1468}, // UEFI
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 1472, 1472},
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 1473, 1472},
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 8192, 1472},
		{"127.0.0.1:0", net.IPv4(127, 0, 0, 1), 65464, 1472},
		// ":port" binds IPv4 only; a dual-stack socket would be clamped
		// like IPv6 below and cut UEFI's 1468 to 1452.
		{":0", net.IPv4(127, 0, 0, 1), 1468, 1468},
		{":0", net.IPv4(127, 0, 0, 1), 65464, 1472},
		// IPv6: the library subtracts 48 (IPv6 40 + UDP 8): 1452.
		{"[::1]:0", net.IPv6loopback, 1432, 1432},
		{"[::1]:0", net.IPv6loopback, 1468, 1452},
	}
	servers := map[string]*testServer{} // one per address, living as long as the parent test
	parent := t
	for _, tc := range tests {
		name := tc.listen + " asks " + strconv.Itoa(tc.ask)
		t.Run(name, func(t *testing.T) {
			ts := servers[tc.listen]
			if ts == nil {
				ts = startServer(parent, Config{Listen: tc.listen, Root: tr.Root})
				servers[tc.listen] = ts
			}
			network := "udp4"
			if tc.client.To4() == nil {
				network = "udp6"
			}
			to := net.JoinHostPort(tc.client.String(), strconv.Itoa(ts.port()))
			res, err := newRawClientOn(t, network, tc.client).fetch(to,
				request(opRRQ, "kernel", "octet", "blksize", strconv.Itoa(tc.ask), "tsize", "0"), 0, nil)
			if err != nil || res.err != nil {
				t.Fatalf("fetch: %v %+v", err, res.err)
			}
			if got := res.oack["blksize"]; got != strconv.Itoa(tc.want) {
				t.Errorf("asked %d, granted %s, want %d", tc.ask, got, tc.want)
			}
			equalBytes(t, "kernel", res.data, tr.Files["kernel"])
		})
	}
}
