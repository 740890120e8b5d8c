package am

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
	"github.com/orbit-lab/netboot/internal/textclip"
)

// checkName refuses names that can never be a node, image or domain, before
// anything is looked up.
func checkName(param, v string) error {
	if !inventory.ValidName(v) {
		return apierr.BadRequest("%s: %q is not a valid name", param, textclip.Text(v, 64))
	}
	return nil
}

// resolve looks up every named node (hrn or hostname, in domain unless it
// is "") and picks its image: image if given, else the inventory's, else
// fallback. Every unknown node is named in one error, and so is every node
// left without an image (a 409: name one, or give the node one).
func (s *Server) resolve(ctx context.Context, domain string, names []string, image, fallback string) ([]pxelink.Target, error) {
	if image != "" {
		if err := checkName("image", image); err != nil {
			return nil, err
		}
	}
	nodes, err := s.lookupNodes(ctx, domain, names)
	if err != nil {
		return nil, err
	}
	targets := make([]pxelink.Target, len(nodes))
	var imageless []string
	for i, n := range nodes {
		img := cmp.Or(image, n.PXEImage, fallback)
		if img == "" {
			imageless = append(imageless, n.HRN)
		}
		targets[i] = pxelink.Target{HRN: n.HRN, IP: n.ControlIP, Image: img}
	}
	if len(imageless) > 0 {
		return nil, apierr.New(http.StatusConflict, "no PXE image named for node(s) %s, and the inventory names none", strings.Join(imageless, ", "))
	}
	return targets, nil
}

// lookup finds the boot links of the named nodes, as resolve does, for a
// call that needs no image.
func (s *Server) lookup(ctx context.Context, domain string, names []string) ([]pxelink.Target, error) {
	nodes, err := s.lookupNodes(ctx, domain, names)
	if err != nil {
		return nil, err
	}
	targets := make([]pxelink.Target, len(nodes))
	for i, n := range nodes {
		targets[i] = pxelink.Target{HRN: n.HRN, IP: n.ControlIP}
	}
	return targets, nil
}

// lookupNodes finds the named nodes, each once.
func (s *Server) lookupNodes(ctx context.Context, domain string, names []string) ([]inventory.Node, error) {
	found, missing, err := s.inv.LookupNodes(ctx, domain, names)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		where := ""
		if domain != "" {
			where = fmt.Sprintf(" in domain %q", domain)
		}
		return nil, fmt.Errorf("unknown node(s)%s: %s: %w", where, strings.Join(missing, ", "), store.ErrNotFound)
	}
	var nodes []inventory.Node
	seen := map[string]bool{}
	for _, n := range found {
		if !seen[n.HRN] {
			seen[n.HRN] = true
			nodes = append(nodes, n)
		}
	}
	return nodes, nil
}
