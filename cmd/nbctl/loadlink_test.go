package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orbit-lab/netboot/internal/amclient"
	"github.com/orbit-lab/netboot/internal/apptest"
	"github.com/orbit-lab/netboot/internal/testenv"
	"github.com/orbit-lab/netboot/internal/zstdtest"
)

// pxe reads the node's PXE configuration as pxelinux does: its own file
// (the IP in hex), else the default. It reports whether the node's link
// sent it to a RAM image.
func (n *vnode) pxe() bool {
	ip := netip.MustParseAddr(n.ip).As4()
	if _, err := tftpGet(n.ip, n.tftp, fmt.Sprintf("pxelinux.cfg/%02X%02X%02X%02X", ip[0], ip[1], ip[2], ip[3])); err == nil {
		n.note("pxe-link")
		return true
	}
	n.note("pxe-default") // before the read that the appliance records
	if _, err := tftpGet(n.ip, n.tftp, "pxelinux.cfg/default"); err != nil {
		n.t.Errorf("%s: reading pxelinux.cfg/default: %v", n.hrn, err)
	}
	return false
}

// errTFTP is a TFTP error answer (file not found).
var errTFTP = errors.New("TFTP error")

// tftpGet reads a file (octet, 512-byte blocks) from server, sent from
// the address src, as a boot ROM does.
func tftpGet(src, server, file string) ([]byte, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(src)})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	to, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return nil, err
	}
	rrq := append(append(append([]byte{0, 1}, file...), 0), "octet\x00"...)
	if _, err := conn.WriteToUDP(rrq, to); err != nil {
		return nil, err
	}
	var out []byte
	buf := make([]byte, 4+512)
	for {
		// A hang guard, not a wait: the server answers at once.
		if err := conn.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			return nil, err
		}
		m, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			return nil, err
		}
		switch op := binary.BigEndian.Uint16(buf); {
		case op == 5 && m >= 4:
			return nil, fmt.Errorf("%s: %w %d: %s", file, errTFTP, binary.BigEndian.Uint16(buf[2:]), bytes.TrimRight(buf[4:m], "\x00"))
		case op != 3 || m < 4:
			return nil, fmt.Errorf("%s: unexpected TFTP packet %x", file, buf[:m])
		}
		out = append(out, buf[4:m]...)
		if _, err := conn.WriteToUDP([]byte{0, 4, buf[2], buf[3]}, from); err != nil {
			return nil, err
		}
		if m < len(buf) {
			return out, nil
		}
	}
}

// TestLoadRestoresEarlierLink: against netbootd, nbctl load puts back the
// boot link an EC had set on a node (its image, until when it was set),
// once the node's reboot into its new disk has read its PXE configuration
// (without the link: it boots the disk); a node that had no link has none
// after.
func TestLoadRestoresEarlierLink(t *testing.T) {
	var nodes []*vnode
	inv := "testbeds:\n  - domain: vtb\n    nodes:\n"
	for i := 1; i <= 2; i++ {
		n := newVnode(t, i)
		n.ip = fmt.Sprintf("127.1.0.%d", i) // a loopback address of its own, for TFTP
		nodes = append(nodes, n)
		inv += n.inventory()
	}
	// At debug level netbootd logs every GET: the test sees the load ask
	// for the node's timeline.
	a := apptest.New(t, apptest.Options{Images: []string{"orbit-2.0.0", "orbit-exp"}, Inventory: inv, TFTP: true,
		Args: []string{"--log-level", "debug"}})
	a.Start()
	for _, n := range nodes {
		n.tftp = a.TFTPAddr
		n.run(a.URL)
	}
	c := amclient.New(a.URL).WithToken(a.Token)
	ctx := t.Context()
	img := filepath.Join(t.TempDir(), "base.zst")
	testenv.WriteFile(t, img, zstdtest.Compress(t, diskData("base")))
	nbctlOK(ctx, t, a, "disk", "put", "--as-is", "base", img)
	load := func(n *vnode) string {
		return nbctlOK(ctx, t, a, "load", "--nodes", n.hrn, "--image", "base", "--disk", filepath.Join(n.dir, "disk0"), "--poll", "50ms")
	}

	t.Run("a link set before is back after the load", func(t *testing.T) {
		n := nodes[0]
		ec, err := c.SetBoot(ctx, n.hrn, "orbit-exp", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The node's reboot waits until the load waits for it (polls the
		// node's timeline: once for where the reboot starts, then again),
		// or until the link is back too early: then the reboot would find
		// it and netboot instead of booting the disk.
		n.hold = make(chan struct{})
		var once sync.Once
		release := func() { once.Do(func() { close(n.hold) }) }
		t.Cleanup(release)
		loaded := make(chan string, 1)
		go func() {
			out, errs, err := nbctl(ctx, a, "load", "--nodes", n.hrn, "--image", "base", "--disk", filepath.Join(n.dir, "disk0"), "--poll", "50ms")
			if err != nil {
				t.Errorf("nbctl load: %v\n%s%s", err, out, errs)
			}
			loaded <- out
		}()
		for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			links, err := c.Boot(ctx)
			back := err == nil && len(links) == 1 && links[0].Image == "orbit-exp" && links[0].SetAt.After(ec.SetAt)
			if back || strings.Count(a.Log.String(), "path=/api/v1/nodes/"+n.hrn+"/events") >= 2 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the load never waited for the node's reboot:\n%s", a.Log)
			}
		}
		release()
		out := <-loaded
		if !bytes.Equal(n.readDisk("disk0"), diskData("base")) {
			t.Errorf("the disk does not hold the image")
		}
		// Netbooted through the load's link, then booted its disk: the
		// earlier link was not there yet when the reboot read pxelinux.cfg.
		if got, want := strings.Join(n.steps(), " "), "system_reset pxe-link rc-reboot pxe-default"; got != want {
			t.Errorf("the node's boots: %q, want %q", got, want)
		}
		if !apptest.HasLine(out, n.hrn+": earlier boot link to orbit-exp until ", ": restored") {
			t.Errorf("load does not say it restored the link:\n%s", out)
		}
		links, err := c.Boot(ctx)
		if err != nil || len(links) != 1 {
			t.Fatalf("links after the load: %+v, %v; want the EC's", links, err)
		}
		l := links[0]
		// It ends when the EC's would have (give or take the calls' time).
		if l.HRN != n.hrn || l.Image != "orbit-exp" || l.ExpiresAt.Before(ec.ExpiresAt) || l.ExpiresAt.After(ec.ExpiresAt.Add(2*time.Second)) {
			t.Errorf("link after the load: %+v, want the EC's %+v", l, ec)
		}
		evs, err := c.Events(ctx, n.hrn, 0)
		if err != nil {
			t.Fatal(err)
		}
		var read time.Time
		for _, e := range evs {
			if e.Source == "tftp" && e.What == "pxelinux.cfg/default" {
				read = e.At
			}
		}
		if read.IsZero() || l.SetAt.Before(read) {
			t.Errorf("link put back at %v, the reboot read pxelinux.cfg/default at %v: want after", l.SetAt, read)
		}
	})

	t.Run("no link before, none after", func(t *testing.T) {
		n := nodes[1]
		out := load(n)
		if strings.Contains(out, "earlier") {
			t.Errorf("load speaks of an earlier link:\n%s", out)
		}
		links, err := c.Boot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.HRN == n.hrn {
				t.Errorf("%s has a link after the load: %+v", n.hrn, l)
			}
		}
	})
}
