package vtestbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/childproc"
)

// siteHTTP is the HTTP server a dnsmasq site runs beside it for the boot
// files that go over HTTP (iPXE's kernel and initramfs, UEFI HTTP Boot's
// image): BusyBox's httpd, serving the TFTP root on port 80. It is the
// small static server such a site has at hand (Debian's busybox, also on
// most appliances); it sends files with sendfile, as netbootd does.
type siteHTTP struct {
	cmd  *exec.Cmd
	out  apptest.SyncBuffer
	done <-chan error
}

// siteHTTPConf gives the boot files their types: UEFI HTTP Boot takes a
// RAM-disk image as application/vnd.efi-img.
const siteHTTPConf = ".img:application/vnd.efi-img\n.efi:application/efi\n"

// HTTPDArgs is the site HTTP server's command line: busybox httpd in the
// foreground, verbose, on ServerIP:80, serving root, with conf.
func HTTPDArgs(root, conf string) []string {
	return []string{"httpd", "-f", "-vv", "-p", ServerIP.String() + ":80", "-h", root, "-c", conf}
}

// startSiteHTTP runs busybox httpd in ns and waits until it accepts
// connections.
func startSiteHTTP(ns *Netns, root, state string) (*siteHTTP, error) {
	conf := filepath.Join(state, "httpd.conf")
	if err := os.WriteFile(conf, []byte(siteHTTPConf), 0o644); err != nil {
		return nil, fmt.Errorf("httpd: %w", err)
	}
	h := &siteHTTP{out: apptest.SyncBuffer{Max: 1 << 20}}
	h.cmd = ns.Command(context.Background(), "busybox", HTTPDArgs(root, conf)...)
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h.cmd.Stdout, h.cmd.Stderr = &h.out, &h.out
	var err error
	if h.done, err = childproc.StartLocked(h.cmd); err != nil {
		return nil, fmt.Errorf("httpd: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := ns.Dial(ctx, "tcp", net.JoinHostPort(ServerIP.String(), "80"))
		cancel()
		if err == nil {
			c.Close()
			return h, nil
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("httpd not serving within 10s: %w\n%s", err, h.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *siteHTTP) stop() {
	_, _ = childproc.Stop(h.cmd.Process, syscall.SIGTERM, 5*time.Second, h.done) // its exit status says nothing here
}
