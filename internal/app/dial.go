package app

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

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
