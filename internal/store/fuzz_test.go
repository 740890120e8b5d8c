package store

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orbit-lab/netboot/internal/inventory"
)

const importBaseline = `images:
  - { name: orbit-2.0.0, description: ORBIT RAM image }
testbeds:
  - domain: sb8
    nodes:
      - { hrn: node1-1.sb8, hostname: node1-1, control_ip: 10.18.1.1, control_mac: "00:03:1d:0c:01:01", x: 1, y: 1, pxe_image: orbit-2.0.0 }
      - { hrn: node1-2.sb8, hostname: node1-2, control_ip: 10.18.1.2, control_mac: "00:03:1d:0c:01:02", x: 1, y: 2, power: "qemu:/run/n12.qmp" }
      - { hrn: node2-1.sb8, hostname: node2-1, control_ip: 10.18.2.1, control_mac: "00:03:1d:0c:02:01", x: 2, y: 1, disk: /dev/vda }
  - domain: grid
    nodes:
      - { hrn: node1-1.grid, hostname: node1-1, control_ip: 10.10.1.1, control_mac: "00:03:1d:0a:01:01", x: 1, y: 1 }
`

// inventoryState is an export as maps, in which order does not count.
type inventoryState struct {
	Images   map[string]string         // name -> description
	Testbeds map[string]bool           // domain
	Nodes    map[string]inventory.Node // hrn -> node, Domain set
}

func stateOf(f inventory.File) inventoryState {
	s := inventoryState{Images: map[string]string{}, Testbeds: map[string]bool{}, Nodes: map[string]inventory.Node{}}
	for _, img := range f.Images {
		s.Images[img.Name] = img.Description
	}
	for _, tb := range f.Testbeds {
		s.Testbeds[tb.Domain] = true
		for _, n := range tb.Nodes {
			n.Domain = tb.Domain
			s.Nodes[n.HRN] = n
		}
	}
	return s
}

func (s *Store) exportState(ctx context.Context, tb testing.TB) inventoryState {
	tb.Helper()
	f, err := s.Export(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return stateOf(f)
}

// FuzzImport imports fuzzed documents into a database that holds an
// inventory already, as POST /api/v1/inventory does, and checks Import's
// promise against a model of it: a document is rejected as a whole, with
// an *inventory.Error, and then nothing changes; or it is accepted, and the
// inventory becomes the old one with the document's images added or
// updated, and its nodes added or replacing those of the same hrn (in
// canonical form), every other node kept. An accepted inventory never holds
// one control IP or MAC twice.
func FuzzImport(f *testing.F) {
	for _, s := range []string{
		importBaseline,
		// a new node in a new testbed; an image's description changes
		"images: [{name: orbit-2.0.0, description: new}, {name: other}]\ntestbeds:\n  - domain: outdoor\n    nodes:\n      - { hrn: n1.outdoor, control_ip: 10.30.0.1, control_mac: 00-03-1D-30-00-01, cmc_ip: 10.1.30.1, bootfile: efi/ipxe.efi }\n",
		// two nodes swap addresses
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: node1-1.sb8, control_ip: 10.18.1.2, control_mac: \"00:03:1d:0c:01:02\" }\n      - { hrn: node1-2.sb8, control_ip: 10.18.1.1, control_mac: \"00:03:1d:0c:01:01\" }\n",
		// a node moves to another testbed
		"testbeds:\n  - domain: grid\n    nodes:\n      - { hrn: node2-1.sb8, control_ip: 10.18.2.1, control_mac: \"00:03:1d:0c:02:01\" }\n",
		// takes the address of a node it does not replace
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: node9-9.sb8, control_ip: 10.18.1.1, control_mac: \"00:03:1d:0c:09:09\" }\n",
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: node9-9.sb8, control_ip: 10.18.9.9, control_mac: \"00:03:1D:0C:01:01\" }\n",
		// two of the file's nodes share an address; one bad node among good ones
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: a.sb8, control_ip: 10.18.7.1, control_mac: \"00:03:1d:0c:07:01\" }\n      - { hrn: b.sb8, control_ip: 10.18.7.1, control_mac: \"00:03:1d:0c:07:02\" }\n",
		"testbeds:\n  - domain: sb8\n    nodes:\n      - { hrn: a.sb8, control_ip: 10.18.7.1, control_mac: \"00:03:1d:0c:07:01\" }\n      - { hrn: b.sb8, control_ip: 10.18.7.300, control_mac: \"00:03:1d:0c:07:02\" }\n",
		"testbeds:\n  - domain: sb8\n  - domain: sb8\n",
		"images: [{name: x}, {name: x}]\n",
		"",
	} {
		f.Add([]byte(s))
	}
	ctx := context.Background()
	st := openTest(f)
	base, err := inventory.ParseFile([]byte(importBaseline))
	if err != nil {
		f.Fatal(err)
	}
	if err := st.Import(ctx, base); err != nil {
		f.Fatal(err)
	}
	baseNodes := stateOf(base).Nodes

	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := inventory.ParseFile(data)
		if err != nil {
			return // FuzzParseFile's ground
		}
		before := st.exportState(ctx, t)
		err = st.Import(ctx, doc)
		after := st.exportState(ctx, t)
		if err != nil {
			var ie *inventory.Error
			if !errors.As(err, &ie) || len(ie.Problems) == 0 {
				t.Fatalf("Import: %v is not a list of the document's problems", err)
			}
			if diff := cmp.Diff(before, after); diff != "" {
				t.Fatalf("a rejected import changed the inventory (-before +after):\n%s", diff)
			}
			return
		}
		norm, err := doc.Normalize()
		if err != nil {
			t.Fatalf("Import accepted a document that fails its check: %v", err)
		}
		want := before
		in := stateOf(norm)
		for name, desc := range in.Images {
			want.Images[name] = desc
		}
		for domain := range in.Testbeds {
			want.Testbeds[domain] = true
		}
		for hrn, n := range in.Nodes {
			want.Nodes[hrn] = n
		}
		if diff := cmp.Diff(want, after); diff != "" {
			t.Fatalf("import (-model +database):\n%s", diff)
		}
		ips, macs := map[string]string{}, map[string]string{}
		for hrn, n := range after.Nodes {
			if other, ok := ips[n.ControlIP]; ok {
				t.Fatalf("nodes %s and %s share control IP %s", hrn, other, n.ControlIP)
			}
			if other, ok := macs[n.ControlMAC]; ok {
				t.Fatalf("nodes %s and %s share control MAC %s", hrn, other, n.ControlMAC)
			}
			ips[n.ControlIP], macs[n.ControlMAC] = hrn, hrn
		}

		// Back to the baseline's nodes, so that each input starts alike.
		for hrn := range after.Nodes {
			if _, ok := baseNodes[hrn]; !ok {
				if err := st.DeleteNode(ctx, hrn); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := st.Import(ctx, base); err != nil {
			t.Fatal(err)
		}
	})
}
