package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/internal/apitoken"
	"github.com/orbit-lab/netboot/internal/atomicfile"
	"github.com/orbit-lab/netboot/internal/store"
)

// AdminTokenFile is where, in state_dir, the first start leaves the admin
// token it made.
const AdminTokenFile = "admin.token"

// adminTokenName names the token the first start makes.
const adminTokenName = "admin"

// ensureAdminToken gives a fresh appliance its first admin token, so that
// someone can make the others: with no admin.token in stateDir and no
// active admin token in the database, it makes one, writes it to the file
// (0600) and logs the path, never the token. A file whose token the
// database lacks (a stop between the two writes) is stored again; a
// revoked one is left so.
func ensureAdminToken(ctx context.Context, st *store.Store, stateDir string, log *slog.Logger) error {
	path := filepath.Join(stateDir, AdminTokenFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		return checkAdminToken(ctx, st, path, strings.TrimSpace(string(data)), log)
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("admin token: %w", err)
	}
	has, err := st.HasActiveToken(ctx, string(apierr.RoleAdmin), time.Now())
	if err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if has {
		log.Info("no admin token file; the database holds an active admin token (nbctl token list)", "file", path)
		return nil
	}
	tok, hash, err := apitoken.New()
	if err != nil {
		return err
	}
	// The file first: a stop before the database write leaves a file the
	// next start stores (above), never a token nobody can read.
	if err := atomicfile.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	if err := st.CreateToken(ctx, store.Token{Name: adminTokenName, Role: string(apierr.RoleAdmin), Created: time.Now()}, hash); err != nil {
		return fmt.Errorf("admin token: %w", err)
	}
	log.Info("made an admin token: nbctl reads it with NBCTL_TOKEN=$(cat FILE), or from its config dir", "file", path)
	return nil
}

// checkAdminToken says what the admin.token file's token is worth, and
// stores it if the database lacks it.
func checkAdminToken(ctx context.Context, st *store.Store, path, tok string, log *slog.Logger) error {
	if !apitoken.Is(tok) {
		return fmt.Errorf("admin token: %s holds no token; remove it to have a new one made", path)
	}
	t, err := st.TokenByHash(ctx, apitoken.Hash(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		err = st.CreateToken(ctx, store.Token{Name: adminTokenName, Role: string(apierr.RoleAdmin), Created: time.Now()}, apitoken.Hash(tok))
		if err != nil {
			return fmt.Errorf("admin token: storing %s: %w", path, err)
		}
		log.Info("admin token file stored", "file", path)
	case err != nil:
		return fmt.Errorf("admin token: %w", err)
	case !t.Active(time.Now()):
		log.Warn("the admin token file's token is revoked or expired; remove the file to have a new one made at the next start", "file", path, "name", t.Name)
	default:
		log.Info("admin token", "file", path, "name", t.Name)
	}
	return nil
}
