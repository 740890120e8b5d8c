package am

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/orbit-lab/netboot/internal/inventory"
)

// TestAPINode: a stored node answers with the JSON the inventory model
// would have written, and that JSON is what a PUT body (read into the
// inventory model, strictly) accepts: the two shapes cannot drift apart.
func TestAPINode(t *testing.T) {
	for _, n := range []inventory.Node{
		{HRN: "a.sb8", Domain: "sb8", ControlIP: "10.18.1.1", ControlMAC: "00:03:1d:0c:01:01", Disk: "/dev/sda"},
		{HRN: "b.sb8", Domain: "sb8", Hostname: "b", ControlIP: "10.18.1.2", ControlMAC: "00:03:1d:0c:01:02", CmcIP: "10.1.1.2",
			X: 1, Y: 2, Z: 3, Disk: "/dev/hda", PXEImage: "orbit-2.0.0", Bootfile: "ipxe.efi", Power: "qemu:/run/b.qmp"},
	} {
		want, _ := json.Marshal(n)
		got, err := json.Marshal(apiNode(n))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("apiNode(%s) marshals as %s, %v\nwant %s", n.HRN, got, err, want)
		}
		dec := json.NewDecoder(bytes.NewReader(got))
		dec.DisallowUnknownFields()
		var back inventory.Node
		if err := dec.Decode(&back); err != nil || back != n {
			t.Errorf("%s read back as %+v, %v", got, back, err)
		}
	}
}
