package am

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/am/pxelink"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/store"
)

// The inventory file (Config.InventoryFile) is the inventory's source of
// truth: LoadInventoryFile makes the database what it says, and while it
// is set the API refuses to change nodes, since the next reading would
// undo the change without a word.

// LoadInventoryFile reads Config.InventoryFile and makes the inventory
// what it says, in one transaction: nodes added or replaced by hrn, nodes
// it no longer names deleted, their boot links cleared as DELETE
// /nodes/{hrn} clears them (and the links of nodes whose control IP
// changed, which were made for the old address). A bad file (unreadable,
// bad YAML, a malformed or duplicate entry) changes nothing: the error
// names each problem's line, is logged, and GET /inventory/status shows it
// until a reading succeeds.
func (s *Server) LoadInventoryFile(ctx context.Context) error {
	path := s.cfg.InventoryFile
	if path == "" {
		return errors.New("am: no inventory file configured")
	}
	s.fileMu.Lock()
	defer s.fileMu.Unlock()
	at := time.Now().UTC()
	res, err := s.syncFile(ctx, path)
	if err != nil {
		err = fmt.Errorf("inventory file %s: %w", path, err)
		st := s.status()
		st.Error, st.FailedAt, st.Problems = err.Error(), at, nil
		var ie *inventory.Error
		if !errors.As(err, &ie) {
			s.log.Error("inventory file rejected, the inventory is unchanged", "file", path, "err", err)
			s.setStatus(st)
			return err
		}
		st.Error = fmt.Sprintf("inventory file %s: %s", path, ie.Summary())
		s.log.Error("inventory file rejected, the inventory is unchanged", "file", path, "err", ie.Summary())
		// A line each, as an operator reads a log.
		for _, p := range ie.Problems {
			st.Problems = append(st.Problems, p.Error())
			s.log.Error("inventory file rejected", "file", path, "problem", p.Error())
		}
		s.setStatus(st)
		return err
	}
	st := apiv1.InventoryStatus{Source: apiv1.InventoryFromFile, File: path, LoadedAt: at,
		Added: res.Added, Changed: res.Changed, Unchanged: res.Unchanged}
	var unlink []pxelink.Target
	for _, n := range res.Removed {
		st.Removed = append(st.Removed, n.HRN)
		unlink = append(unlink, pxelink.Target{HRN: n.HRN, IP: n.ControlIP})
	}
	for _, n := range res.Readdressed {
		unlink = append(unlink, pxelink.Target{HRN: n.HRN, IP: n.ControlIP})
	}
	s.log.Info("inventory file read", "file", path, "added", len(res.Added), "changed", len(res.Changed),
		"removed", len(res.Removed), "unchanged", res.Unchanged)
	// Once the inventory has changed (DELETE /nodes/{hrn} clears first): a
	// file can still be refused, and its nodes' links must then stay. A
	// link left by a failure here goes when its lifetime ends.
	if len(unlink) > 0 {
		if err := s.links.Clear(ctx, unlink); err != nil {
			err = fmt.Errorf("inventory file %s: read, but clearing the boot links of removed or readdressed nodes: %w", path, err)
			st.Error, st.FailedAt = err.Error(), at
			s.log.Error("inventory file: boot links", "file", path, "err", err)
			s.setStatus(st)
			return err
		}
	}
	s.setStatus(st)
	return nil
}

// syncFile reads the file and applies it.
func (s *Server) syncFile(ctx context.Context, path string) (res store.SyncResult, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("%w (write it, or set inventory.file: \"\" in netbootd's config to keep the inventory through the API)", err)
	}
	if err != nil {
		return res, err
	}
	f, err := inventory.Load(data) // its problems name their lines
	if err != nil {
		return res, err
	}
	return s.inv.SyncInventory(ctx, f)
}

func (s *Server) status() apiv1.InventoryStatus {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	return s.fileStatus
}

func (s *Server) setStatus(st apiv1.InventoryStatus) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.fileStatus = st
}

// fileManaged refuses an API change of nodes while the inventory follows
// its file.
func (s *Server) fileManaged() error {
	if s.cfg.InventoryFile == "" {
		return nil
	}
	return apierr.New(http.StatusConflict, "the inventory follows %s (netbootd's inventory.file): edit that file, then reload netbootd (systemctl reload netbootd, or send it SIGHUP)",
		s.cfg.InventoryFile)
}

// editHint tells an operator where a node's inventory entry is changed.
func (s *Server) editHint() string {
	if s.cfg.InventoryFile != "" {
		return fmt.Sprintf("in its entry in %s, then reload netbootd (systemctl reload netbootd)", s.cfg.InventoryFile)
	}
	return "in its inventory entry (nbctl inventory export, edit, nbctl inventory import)"
}

func (s *Server) apiInventoryStatus(c *gin.Context) {
	c.JSON(http.StatusOK, s.status())
}
