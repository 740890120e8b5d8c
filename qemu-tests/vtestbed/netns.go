package vtestbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/internal/netns"
	"golang.org/x/sys/unix"
)

// Netns is a network namespace made by this package (ip netns add), which
// Delete removes with everything in it.
type Netns struct {
	Name string
	fd   int // /run/netns/<Name>, for Dial
}

// NewNetns makes a network namespace named prefix-<6 random hex digits>
// and sets its loopback up.
func NewNetns(prefix string) (*Netns, error) {
	var rnd [3]byte
	rand.Read(rnd[:])
	name := prefix + "-" + hex.EncodeToString(rnd[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		err = fmt.Errorf("netns %s: %w", name, err)
		if derr := exec.Command("ip", "netns", "del", name).Run(); derr != nil {
			err = errors.Join(err, fmt.Errorf("ip netns del %s: %w", name, derr))
		}
		return nil, err
	}
	n := &Netns{Name: name, fd: fd}
	if err := n.IP("link", "set", "lo", "up"); err != nil {
		return nil, errors.Join(err, n.Delete())
	}
	return n, nil
}

// IP runs `ip -n <ns> args...`.
func (n *Netns) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", n.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %w: %s", n.Name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Command returns a command that runs name inside the namespace
// (ip netns exec, which execs name: the process is name itself).
func (n *Netns) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Sysctl sets a sysctl inside the namespace (net.* keys are per namespace).
func (n *Netns) Sysctl(key, value string) error {
	out, err := n.Command(context.Background(), "sysctl", "-q", "-w", key+"="+value).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netns %s: sysctl %s=%s: %w: %s", n.Name, key, value, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Dial connects from inside the namespace (a socket stays in the
// namespace it was made in).
func (n *Netns) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(n.Name, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// HTTPClient returns an HTTP client whose connections are made inside the
// namespace.
func (n *Netns) HTTPClient() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: n.Dial, DisableKeepAlives: false, MaxIdleConnsPerHost: 4},
	}
}

// Delete removes the namespace. Processes still inside keep it alive (and
// its interfaces), so stop them first.
func (n *Netns) Delete() error {
	if n.fd >= 0 {
		unix.Close(n.fd)
		n.fd = -1
	}
	out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// haveTun reports whether /dev/net/tun can be opened (taps need it).
func haveTun() error {
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return f.Close()
}
