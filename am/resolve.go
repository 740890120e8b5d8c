package am

import (
	"context"
	"fmt"
	"strings"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// checkName refuses names that can never be a node, image or domain, before
// anything is looked up.
func checkName(param, v string) error {
	if !inventory.ValidName(v) {
		return apierr.BadRequest("%s: %q is not a valid name", param, truncate(v))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// resolve looks up every named node (hrn or hostname, in domain unless it
// is "") and picks its image: image if given, else the inventory's, else the
// default. Every unknown node is named in one error.
func (s *Server) resolve(ctx context.Context, domain string, names []string, image string) ([]inventory.Node, []pxelink.Target, error) {
	if image != "" {
		if err := checkName("image", image); err != nil {
			return nil, nil, err
		}
	}
	found, missing, err := s.inv.LookupNodes(ctx, domain, names)
	if err != nil {
		return nil, nil, err
	}
	if len(missing) > 0 {
		where := ""
		if domain != "" {
			where = fmt.Sprintf(" in domain %q", domain)
		}
		return nil, nil, fmt.Errorf("unknown node(s)%s: %s: %w", where, strings.Join(missing, ", "), store.ErrNotFound)
	}
	var nodes []inventory.Node
	var targets []pxelink.Target
	seen := map[string]bool{}
	for _, n := range found {
		if seen[n.HRN] {
			continue
		}
		seen[n.HRN] = true
		img := image
		if img == "" {
			img = n.PXEImage
		}
		if img == "" {
			img = s.cfg.DefaultImage
		}
		nodes = append(nodes, n)
		targets = append(targets, pxelink.Target{HRN: n.HRN, IP: n.ControlIP, Image: img})
	}
	return nodes, targets, nil
}
