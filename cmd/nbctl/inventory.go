package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/orbit-lab/netboot/am/apiv1"
)

// inventoryStatus says where the inventory comes from; for an inventory
// file, what its last reading changed, or why it was refused (then it
// fails, for scripts that reload and check).
func (k *cli) inventoryStatus(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("inventory status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	st, err := k.c.InventoryStatus(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := k.printJSON(st); err != nil {
			return err
		}
	} else {
		k.printInventoryStatus(st)
	}
	if st.Error != "" {
		return errors.New("the last reading of the inventory file failed")
	}
	return nil
}

func (k *cli) printInventoryStatus(st apiv1.InventoryStatus) {
	if st.Source != apiv1.InventoryFromFile {
		fmt.Fprintln(k.out, "inventory: kept through the API (nbctl inventory import); netbootd has no inventory.file")
		return
	}
	fmt.Fprintf(k.out, "inventory: follows %s (edit it, then systemctl reload netbootd)\n", st.File)
	if !st.LoadedAt.IsZero() {
		fmt.Fprintf(k.out, "read at %s: %d added, %d changed, %d removed, %d unchanged\n",
			clock(&st.LoadedAt), len(st.Added), len(st.Changed), len(st.Removed), st.Unchanged)
		for _, l := range []struct {
			what  string
			nodes []string
		}{{"added", st.Added}, {"changed", st.Changed}, {"removed", st.Removed}} {
			if len(l.nodes) > 0 {
				fmt.Fprintf(k.out, "  %s: %s\n", l.what, strings.Join(l.nodes, " "))
			}
		}
	}
	if st.Error == "" {
		return
	}
	fmt.Fprintf(k.out, "LAST READING FAILED at %s:\n  %s\n", clock(&st.FailedAt), st.Error)
	for _, p := range st.Problems {
		fmt.Fprintf(k.out, "  %s\n", p)
	}
}
