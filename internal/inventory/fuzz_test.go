package inventory

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseFile feeds documents through the import path (ParseFile, then
// Check and Normalize, as the seed and POST /api/v1/inventory do, and Load,
// which notes the entries' lines for Check, as inventory.file and the
// import do) and checks
// what the store and the export rely on: a rejected document yields an
// error and nothing else; what Check keeps is canonical, unique, and stays
// the same when checked again; and a valid document survives export
// (Marshal) and import again unchanged. Seeds: the example inventory and
// the YAML forms an operator's file may take (flow and block style,
// anchors, quoting, MAC spellings). testdata/fuzz/FuzzParseFile holds the
// inputs that once broke one of these.
func FuzzParseFile(f *testing.F) {
	example, err := os.ReadFile("../../examples/inventory.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example)
	for _, s := range []string{
		"",
		"images: []\ntestbeds: []\n",
		"testbeds:\n  - domain: sb8\n    nodes:\n      - hrn: node1-1.sb8\n        hostname: node1-1\n        control_ip: 10.18.1.1\n        control_mac: 00-03-1D-0C-01-01\n        cmc_ip: 10.1.1.1\n        x: 1\n        y: 1\n        z: -3\n        disk: /dev/nvme0n1\n        pxe_image: orbit-2.0.0\n        bootfile: efi64/ipxe.efi\n        power: qemu:/run/vm/node.qmp\n",
		"testbeds:\n  - {domain: sb8, nodes: [{hrn: a, control_ip: 10.0.0.1, control_mac: \"0003.1d0c.0101\"}, {hrn: a, control_ip: 10.0.0.1, control_mac: \"00:03:1d:0c:01:01\"}]}\n  - {domain: sb8}\n",
		"images:\n  - &img {name: y, description: \"yes\"}\n  - *img\n  - {name: \"on\", description: \"- a: b # c\\n'd'\"}\n",
		"testbeds:\n  - domain: grid\n    nodes:\n      - &n {hrn: n1, control_ip: 010.0.0.1, control_mac: 00:03:1d:0c:01:01, power: \"ipmi:10.1.1.1:ADMIN:/etc/bmc.pass\"}\n      - <<: *n\n        hrn: n2\n",
		"testbeds:\n  - domain: sb8\n    nodes:\n      - {hrn: n, control_ip: \"::ffff:10.0.0.1\", control_mac: \"00:00:00:00:00:00:00:01\", disk: \"/dev/../etc/passwd\", bootfile: \"../x\"}\n",
		"images: [{name: !!binary aGVsbG8=}]\n",
		"testbeds: [{domain: sb8, nodes: [{hrn: n, control_ip: 10.0.0.1, control_mac: 00:03:1d:0c:01:01, x: 99999999999999999999}]}]\n",
		"---\nimages: []\n---\ntestbeds: []\n",
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: a, control_ip: 10.0.0.1, contrl_mac: x }\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := ParseFile(data)
		if err != nil {
			if !cmp.Equal(file, File{}) {
				t.Fatalf("ParseFile failed (%v) yet returned %+v", err, file)
			}
			return
		}
		kept, problems := file.Check()
		norm, err := file.Normalize()
		if (err == nil) != (len(problems) == 0) {
			t.Fatalf("Normalize: %v, but Check found %d problem(s)", err, len(problems))
		}
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) || len(ie.Problems) != len(problems) {
				t.Fatalf("Normalize: %v, want an *Error with Check's %d problem(s)", err, len(problems))
			}
			if !cmp.Equal(norm, File{}) {
				t.Fatalf("Normalize failed yet returned %+v", norm)
			}
		}
		// Load is the same check with line numbers: the same verdict, the
		// same number of problems, the same document.
		loaded, lerr := Load(data)
		if lerr != nil {
			t.Fatalf("Load: %v, but ParseFile took it", lerr)
		}
		loaded, lerr = loaded.Normalize()
		var le *Error
		switch {
		case (lerr == nil) != (err == nil):
			t.Fatalf("Load: %v, but Normalize: %v", lerr, err)
		case err != nil && (!errors.As(lerr, &le) || len(le.Problems) != len(problems)):
			t.Fatalf("Load: %v, want an *Error with Check's %d problem(s)", lerr, len(problems))
		case !cmp.Equal(loaded, norm):
			t.Fatalf("Load and Normalize disagree (-Normalize +Load):\n%s", cmp.Diff(norm, loaded))
		}
		checkKept(t, kept)
		if err != nil {
			return
		}
		if diff := cmp.Diff(kept, norm); diff != "" {
			t.Fatalf("Normalize and Check disagree (-Check +Normalize):\n%s", diff)
		}
		again, problems := norm.Check()
		if len(problems) > 0 {
			t.Fatalf("a normalized document fails its check again: %v", problems)
		}
		if diff := cmp.Diff(norm, again); diff != "" {
			t.Fatalf("normalizing twice changes the document (-once +twice):\n%s", diff)
		}
		checkRoundTrip(t, norm)
	})
}

// checkRoundTrip checks that a normalized document survives export and
// import unchanged.
func checkRoundTrip(t *testing.T, norm File) {
	t.Helper()
	out, err := norm.Marshal()
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", norm, err)
	}
	back, err := ParseFile(out)
	if err != nil {
		t.Fatalf("the export does not parse: %v\n%s", err, out)
	}
	back, err = back.Normalize()
	if err != nil {
		t.Fatalf("the export is rejected: %v\n%s", err, out)
	}
	if diff := cmp.Diff(norm, back); diff != "" {
		t.Fatalf("export and import change the document (-before +after):\n%s\n%s", diff, out)
	}
}

// checkKept checks the entries Check keeps from any document: each is in
// canonical form, and no image, hrn, control IP or control MAC appears
// twice (the store's uniqueness rules).
func checkKept(t *testing.T, f File) {
	t.Helper()
	images := map[string]bool{}
	for _, img := range f.Images {
		if !ValidName(img.Name) || images[img.Name] {
			t.Fatalf("kept image %q: invalid or twice", img.Name)
		}
		images[img.Name] = true
	}
	seen := map[string]bool{}
	for _, tb := range f.Testbeds {
		for _, n := range tb.Nodes {
			if n.Domain != tb.Domain {
				t.Fatalf("kept node %q has domain %q in testbed %q", n.HRN, n.Domain, tb.Domain)
			}
			nn, err := Normalize(n)
			if err != nil {
				t.Fatalf("kept node fails Normalize: %v", err)
			}
			if diff := cmp.Diff(n, nn); diff != "" {
				t.Fatalf("kept node %q is not canonical (-kept +normalized):\n%s", n.HRN, diff)
			}
			if ip, err := netip.ParseAddr(n.ControlIP); err != nil || !ip.Is4() || ip.String() != n.ControlIP {
				t.Fatalf("kept node %q: control_ip %q", n.HRN, n.ControlIP)
			}
			if mac, err := net.ParseMAC(n.ControlMAC); err != nil || len(mac) != 6 || mac.String() != n.ControlMAC {
				t.Fatalf("kept node %q: control_mac %q", n.HRN, n.ControlMAC)
			}
			for _, k := range []string{"hrn " + n.HRN, "ip " + n.ControlIP, "mac " + n.ControlMAC} {
				if seen[k] {
					t.Fatalf("kept two nodes with %s", k)
				}
				seen[k] = true
			}
		}
	}
}

// FuzzMarshal builds documents field by field (the byte-level mutations of
// FuzzParseFile rarely stay valid YAML) and checks that every document the
// check accepts survives export and import unchanged: whatever an image's
// description or a node's power spec holds, Marshal must quote it so that
// ParseFile reads it back.
func FuzzMarshal(f *testing.F) {
	f.Add("orbit-2.0.0", "ORBIT RAM image: imaging", "node1-1.sb8", "sb8", "node1-1", "10.18.1.1", "00:03:1D:0C:01:01", "10.1.1.1", "/dev/sda", "orbit-2.0.0", "efi64/ipxe.efi", "qemu:/run/vm/n.qmp", 1, 2, 0)
	f.Add("y", "yes", "true", "null", "on", "10.18.1.1", "0003.1d0c.0101", "", "", "", "", "ipmi:10.1.1.1:ADMIN:/etc/bmc.pass", -1, 0, 1<<40)
	// Every seed is a valid document, or the round trip goes untested.
	f.Add("a", " - x: #y\n'z' \t", "1e3", "0x1F", "", "10.0.0.1", "00-03-1d-0c-01-01", "", "/dev/sdb", "", "", " none ", 0, 0, 0)
	f.Add("b", "\"\\\u2028\ufeff", "n", "d", "", "10.0.0.1", "00:03:1d:0c:01:01", "", "", "", "", "", 0, 0, 0)
	f.Fuzz(func(t *testing.T, image, desc, hrn, domain, hostname, ip, mac, cmc, disk, pxe, bootfile, pwr string, x, y, z int) {
		doc := File{
			Images: []Image{{Name: image, Description: desc}},
			Testbeds: []Testbed{{Domain: domain, Nodes: []Node{{HRN: hrn, Hostname: hostname, ControlIP: ip, ControlMAC: mac,
				CmcIP: cmc, X: x, Y: y, Z: z, Disk: disk, PXEImage: pxe, Bootfile: bootfile, Power: pwr}}}},
		}
		norm, err := doc.Normalize()
		if err != nil {
			return
		}
		checkRoundTrip(t, norm)
	})
}
