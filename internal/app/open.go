package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/catalog"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/query"
	"github.com/pulselake/pulselake/internal/secret"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// This file holds the openers of the data directory's parts: the stream connection, the lake,
// the SQL engine, the token and secret stores and the pipeline runner. serve and every CLI
// command open them through these functions, so both see the same parts the same way.

// Dial connects a CLI command to the stream of a data directory: to the external cluster when
// configured, to a running serve through its loopback listener, or else by starting the
// embedded server on the directory for the duration of the command. close releases it.
func Dial(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config) (conn *stream.Conn, closeFn func(), err error) {
	if cfg.NATS.URL != "" {
		conn, err = stream.Connect(ctx, log, stream.ConnOptions{URL: cfg.NATS.URL, Name: "pulselake-cli", Replicas: cfg.NATS.Replicas})
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.Close, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating data directory: %w", err)
	}
	unlock, lockErr := lockDataDir(dataDir)
	if lockErr != nil {
		// A serve holds the directory: use its listener.
		data, err := os.ReadFile(filepath.Join(dataDir, serveInfoFile))
		if err != nil {
			return nil, nil, fmt.Errorf("%w; and its %s is unreadable: %v", lockErr, serveInfoFile, err)
		}
		var info serveInfo
		if err := json.Unmarshal(data, &info); err != nil || info.NATS == "" {
			return nil, nil, fmt.Errorf("%w; it serves no NATS listener (nats.listen: off), so stop it first", lockErr)
		}
		conn, err = stream.Connect(ctx, log, stream.ConnOptions{URL: info.NATS, User: info.User, Password: info.Password, Name: "pulselake-cli"})
		if err != nil {
			return nil, nil, err
		}
		return conn, conn.Close, nil
	}
	if len(cfg.Cluster.Routes) > 0 {
		// A cluster node's store must not be opened by a server outside the cluster.
		unlock()
		return nil, nil, fmt.Errorf("%s is the data directory of a cluster node (cluster.routes is set) and its serve --cluster is not running: start it, or give the cluster's --nats-url", dataDir)
	}
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: filepath.Join(dataDir, "stream")})
	if err != nil {
		unlock()
		return nil, nil, err
	}
	conn, err = stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "pulselake-cli"})
	if err != nil {
		srv.Shutdown(ctx)
		unlock()
		return nil, nil, err
	}
	return conn, func() {
		conn.Close()
		srv.Shutdown(context.Background())
		unlock()
	}, nil
}

// OpenTokens opens the token store over a dialled connection.
func OpenTokens(ctx context.Context, log *slog.Logger, conn *stream.Conn) (*token.Store, error) {
	kv, err := conn.KV(ctx, token.Bucket, "pulselake API tokens (SHA-256 of each token)")
	if err != nil {
		return nil, err
	}
	return token.Open(ctx, log, kv)
}

// OpenLake opens the lake of the data directory as cfg configures it (lake: section).
// The crawler's registry is migrated to locations relative to the data directory.
func OpenLake(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config) (*lake.Store, error) {
	st, err := lake.Open(ctx, log.With("component", "lake"), cfg.Lake.WithDefaults(dataDir))
	if err != nil {
		return nil, err
	}
	if _, err := catalog.Migrate(dataDir, st.PreviousDataDir(dataDir)); err != nil {
		log.Warn("the crawled tables' registry could not be migrated to locations relative to the data directory", "err", err)
	}
	return st, nil
}

// OpenQuery opens a SQL engine over the lake of the data directory for one command; it opens
// its own lake store and closes it with the engine.
func OpenQuery(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config) (*query.Engine, error) {
	return query.Open(ctx, log.With("component", "query"), nil, queryOptions(dataDir, cfg, nil))
}

// queryOptions are the SQL engine's options over the data directory's lake; st is the open
// lake store to share, or nil for the engine to open its own.
func queryOptions(dataDir string, cfg *config.Config, st *lake.Store) query.Options {
	return query.Options{Lake: cfg.Lake.WithDefaults(dataDir), DataDir: dataDir, Store: st, Config: cfg.Query}
}

// sessionOpener opens a SQL session over the lake store st for each pipeline run.
func sessionOpener(log *slog.Logger, dataDir string, cfg *config.Config, st *lake.Store) pipeline.OpenSession {
	o := queryOptions(dataDir, cfg, st)
	return func(ctx context.Context) (pipeline.Session, error) {
		return query.OpenSession(ctx, log, o)
	}
}

// OpenSecrets opens the secret store (a NATS KV bucket) over conn, with the master key from
// PULSELAKE_MASTER_KEY or <data>/master.key, creating that file when neither exists.
func OpenSecrets(ctx context.Context, log *slog.Logger, reg prometheus.Registerer, dataDir string, conn *stream.Conn) (*secret.Store, error) {
	key, created, err := secret.LoadMasterKey(dataDir, os.Getenv)
	if err != nil {
		return nil, err
	}
	if created {
		log.Warn("created a new master key for the secret store; back it up", "path", filepath.Join(dataDir, secret.KeyFile))
	}
	kv, err := conn.KV(ctx, secret.Bucket, "pulselake secrets (AES-256-GCM)")
	if err != nil {
		return nil, err
	}
	return secret.Open(ctx, log.With("component", "secret"), reg, kv, secret.Options{MasterKey: key})
}

// lazySecrets opens the secret store on first use: only models that call pseudonymize()
// need it, so other pipelines run without touching the stream. A failed open is tried again
// on the next use.
type lazySecrets struct {
	open  func(ctx context.Context) (*secret.Store, func(), error)
	mu    sync.Mutex
	store *secret.Store
	done  func() // releases what open opened
}

func (l *lazySecrets) Create(ctx context.Context, name string, value []byte) ([]byte, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.store == nil {
		st, done, err := l.open(ctx)
		if err != nil {
			return nil, false, err
		}
		l.store, l.done = st, done
	}
	return l.store.Create(ctx, name, value)
}

func (l *lazySecrets) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		l.done()
	}
}

// OpenPipelines returns a pipeline runner for one CLI command over the data directory's
// lake: each model runs in its own SQL session, and the secret store (with the stream it
// lives in) is opened only when a model pseudonymizes. close releases both.
func OpenPipelines(ctx context.Context, log *slog.Logger, dataDir string, cfg *config.Config) (runner *pipeline.Runner, closeFn func(), err error) {
	st, err := OpenLake(ctx, log, dataDir, cfg)
	if err != nil {
		return nil, nil, err
	}
	secrets := &lazySecrets{open: func(ctx context.Context) (*secret.Store, func(), error) {
		conn, closeConn, err := Dial(ctx, log, dataDir, cfg)
		if err != nil {
			return nil, nil, err
		}
		s, err := OpenSecrets(ctx, log, nil, dataDir, conn)
		if err != nil {
			closeConn()
			return nil, nil, err
		}
		return s, closeConn, nil
	}}
	runner, err = pipeline.NewRunner(log, prometheus.NewRegistry(), pipeline.Options{Open: sessionOpener(log, dataDir, cfg, st), Secrets: secrets})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return runner, func() { secrets.close(); st.Close() }, nil
}
