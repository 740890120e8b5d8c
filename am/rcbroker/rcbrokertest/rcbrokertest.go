// Package rcbrokertest runs an RC broker in process, for tests and
// benchmarks: a real store (SQLite in a directory), the broker's routes on
// a gin router, served on a loopback port that survives Restart, so that
// an RC can reconnect to the "same appliance".
package rcbrokertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/orbit-lab/netboot/am/apierr"
	"github.com/orbit-lab/netboot/am/rcbroker"
	"github.com/orbit-lab/netboot/internal/inventory"
	"github.com/orbit-lab/netboot/internal/peer"
	"github.com/orbit-lab/netboot/internal/store"
)

// Appliance is a broker with its store and HTTP server.
type Appliance struct {
	Dir  string // state lives in Dir/state, images in Dir/images
	Addr string // 127.0.0.1:port, the same across restarts
	URL  string // http://Addr
	Log  io.Writer

	cfg       rcbroker.Config
	inventory string

	mu     sync.Mutex
	st     *store.Store
	broker *rcbroker.Broker
	srv    *http.Server
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}
}

// Options say what differs from the defaults.
type Options struct {
	Inventory string          // YAML imported at each start into an empty database
	Config    rcbroker.Config // ImageDir defaults to Dir/images
	Log       io.Writer       // default: discard
}

// Start starts an appliance with its state in dir.
func Start(dir string, o Options) (*Appliance, error) {
	if o.Config.ImageDir == "" {
		o.Config.ImageDir = filepath.Join(dir, "images")
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &Appliance{Dir: dir, Addr: ln.Addr().String(), Log: o.Log, cfg: o.Config, inventory: o.Inventory}
	a.URL = "http://" + a.Addr
	if err := a.start(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return a, nil
}

// Store is the appliance's database (until the next Restart).
func (a *Appliance) Store() *store.Store {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.st
}

// Broker is the appliance's broker (until the next Restart).
func (a *Appliance) Broker() *rcbroker.Broker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.broker
}

func (a *Appliance) start(ln net.Listener) error {
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, filepath.Join(a.Dir, "state"))
	if err != nil {
		cancel()
		return err
	}
	if n, err := st.NodeCount(ctx); err == nil && n == 0 && a.inventory != "" {
		f, err := inventory.ParseFile([]byte(a.inventory))
		if err == nil {
			err = st.Import(ctx, f)
		}
		if err != nil {
			st.Close()
			cancel()
			return fmt.Errorf("inventory: %w", err)
		}
	}
	log := slog.New(slog.NewTextHandler(a.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := rcbroker.New(a.cfg, st, log)
	if err != nil {
		st.Close()
		cancel()
		return err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	b.Register(r.Group("/api/v1"), openGuard{})
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		go func() {
			if err := b.Run(ctx); err != nil && ctx.Err() == nil {
				log.Error("rcbrokertest: broker stopped", "err", err)
			}
		}()
		// Stop cancels ctx before it shuts the server down: an end before
		// that is a failure.
		if err := srv.Serve(ln); ctx.Err() == nil {
			log.Error("rcbrokertest: serve", "err", err)
		}
	}()
	a.mu.Lock()
	a.st, a.broker, a.srv, a.log, a.cancel, a.done = st, b, srv, log, cancel, done
	a.mu.Unlock()
	return nil
}

// Stop stops serving and closes the store, as a netbootd shutdown does.
func (a *Appliance) Stop() {
	a.mu.Lock()
	srv, log, cancel, done, st := a.srv, a.log, a.cancel, a.done, a.st
	a.srv = nil
	a.mu.Unlock()
	if srv == nil {
		return
	}
	cancel() // ends the long polls, as netbootd's signal context does
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Past the drain time the handlers left run on, as under netbootd;
		// the log says so for the test that looks.
		log.Warn("rcbrokertest: shutdown", "err", err)
	}
	<-done
	if err := st.Close(); err != nil {
		log.Error("rcbrokertest: closing the store", "err", err)
	}
}

// Restart stops the appliance and starts it again on the same address;
// with wipe, its database is deleted first (the enrollments are lost, the
// inventory is imported again).
func (a *Appliance) Restart(wipe bool) error {
	a.Stop()
	if wipe {
		if err := os.RemoveAll(filepath.Join(a.Dir, "state")); err != nil {
			return err
		}
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port was ours a moment ago
		if ln, err = net.Listen("tcp", a.Addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("listen again on %s: %w", a.Addr, err)
	}
	return a.start(ln)
}

// OperatorToken stands for an operator's token on the node routes (disk
// images), where the broker itself tells an RC from an operator.
const OperatorToken = "nbt_rcbrokertest-operator"

// openGuard stands in for the AM's token guard (am/guard, tested in am,
// checks the tokens in netbootd): the broker alone is under test here.
// It admits every caller of the operators' routes as an admin; on the
// node routes, only a request bearing OperatorToken is an operator's.
type openGuard struct{}

func (openGuard) Admit(_, _ string, role apierr.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		who := apierr.Caller{Addr: peer.Name(c.Request)}
		if role.Rank() > 0 || c.GetHeader("Authorization") == "Bearer "+OperatorToken {
			who.Name, who.Role = "rcbrokertest", apierr.RoleAdmin
		}
		apierr.SetCaller(c, who)
	}
}
