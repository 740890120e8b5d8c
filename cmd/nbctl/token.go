package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/orbit-lab/netboot/am/apiv1"
	"github.com/orbit-lab/netboot/internal/amclient"
)

// tokenFile is where nbctl looks for its token without $NBCTL_TOKEN or
// --token-file: under the user's config directory.
func tokenFile() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "netboot", "token")
}

// loadToken is the token nbctl sends: --token-file's, else $NBCTL_TOKEN,
// else the one in tokenFile; "" for none (the server says which role a
// call needs).
func loadToken(flagFile string) (string, error) {
	path := flagFile
	if path == "" {
		if t := strings.TrimSpace(os.Getenv("NBCTL_TOKEN")); t != "" {
			return t, nil
		}
		path = tokenFile()
	}
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && flagFile == "" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// refused says whether err is the server's refusal of the token, or of
// its absence.
func refused(err error) bool {
	var e *amclient.Error
	return errors.As(err, &e) && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// authHint follows a refusal of the token, or of its absence, with how to
// give nbctl one.
func authHint(err error) error {
	if !refused(err) {
		return err
	}
	hint := "set NBCTL_TOKEN, --token-file FILE or " + tokenFile() + " to a token of that role " +
		"(nbctl token create by an admin; the first admin token is state_dir/admin.token on the appliance)"
	if e := (*amclient.Error)(nil); errors.As(err, &e) && e.Status == http.StatusForbidden {
		hint = "ask an admin for a token of that role (nbctl token create --role ...)"
	}
	return fmt.Errorf("%w\n%s", err, hint)
}

func (k *cli) tokenCreate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	name := fs.String("name", "", "the token's name (unique)")
	role := fs.String("role", "", "viewer, operator or admin")
	expires := fs.String("expires", "", "lifetime, such as 90d or 12h (default: never)")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	if *name == "" || *role == "" {
		return fmt.Errorf("--name and --role are required: %w", errUsage)
	}
	req := apiv1.TokenRequest{Name: *name, Role: *role}
	if *expires != "" {
		d, err := parseLifetime(*expires)
		if err != nil {
			return fmt.Errorf("--expires: %w: %w", err, errUsage)
		}
		req.Expires = time.Now().Add(d)
	}
	t, err := k.c.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(k.errOut, "token %q (%s)%s: shown this once, keep it:\n", t.Name, t.Role, until(t.Expires))
	fmt.Fprintln(k.out, t.Secret)
	return nil
}

// parseLifetime reads a duration, with d for days (90d) beside Go's units.
func parseLifetime(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		n, err = strconv.Atoi(days)
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want a positive duration such as 90d, 12h or 30m", s)
	}
	return d, nil
}

func until(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return ", until " + t.Local().Format(time.DateTime)
}

func (k *cli) tokenList(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, 0, 0); err != nil {
		return err
	}
	now := time.Now()
	return listTable(ctx, k, k.c.Tokens, *asJSON, "NAME\tROLE\tCREATED\tEXPIRES\tSTATE", func(t apiv1.Token) []string {
		state, expires := "active", "never"
		if !t.Expires.IsZero() {
			expires = t.Expires.Local().Format(time.DateTime)
			if !now.Before(t.Expires) {
				state = "expired"
			}
		}
		if !t.Revoked.IsZero() {
			state = "revoked"
		}
		return []string{t.Name, t.Role, t.Created.Local().Format(time.DateTime), expires, state}
	})
}

func (k *cli) tokenRevoke(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("token revoke", flag.ContinueOnError)
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	if err := k.c.RevokeToken(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(k.out, "revoked %s\n", fs.Arg(0))
	return nil
}
