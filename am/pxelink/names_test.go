package pxelink

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestClearAfterAddressMoved: the inventory gave a linked node another
// control IP; clearing it by its new address must remove the link made
// under the old one too, or the node's old address goes on netbooting.
func TestClearAfterAddressMoved(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "img")
	if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", "img"}, {"n2", "10.18.1.3", "img"}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.m.Clear(ctx, []Target{{HRN: "n1", IP: "10.18.1.9"}}); err != nil {
		t.Fatal(err)
	}
	// n2 keeps its link: only n1's recorded name goes.
	if diff := cmp.Diff(map[string]string{"img": "file", "0A120103": "./img"}, f.listing(t)); diff != "" {
		t.Errorf("after clearing n1 by its new address (-want +got):\n%s", diff)
	}
	links, err := f.m.List(ctx)
	if err != nil || len(links) != 1 || links[0].HRN != "n2" {
		t.Errorf("links %+v, %v: want n2's alone", links, err)
	}
}

// TestReservedImageNames: a node cannot be pointed at a file of cfg_dir
// that is not an image, even though it is a regular file there: default
// (what every unlinked node boots) or another node's link name.
func TestReservedImageNames(t *testing.T) {
	for _, image := range []string{"default", "0A120103"} {
		t.Run(image, func(t *testing.T) {
			ctx := t.Context()
			f := newFixture(t, "img", image) // a regular file of that name
			if err := f.m.EnsureDefault(); err != nil {
				t.Fatal(err)
			}
			before := f.listing(t)
			if err := f.m.CheckImage(image); !errors.Is(err, ErrInvalid) {
				t.Errorf("CheckImage(%q) = %v, want ErrInvalid", image, err)
			}
			if _, err := f.m.Set(ctx, []Target{{"n1", "10.18.1.2", image}}, 0); !errors.Is(err, ErrInvalid) {
				t.Errorf("Set to %q = %v, want ErrInvalid", image, err)
			}
			if diff := cmp.Diff(before, f.listing(t)); diff != "" {
				t.Errorf("directory changed (-before +after):\n%s", diff)
			}
		})
	}
}
