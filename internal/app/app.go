// Package app wires pulselake together: it is the only package that sees every concrete
// type. Run starts the stream, the token store, the front doors and the HTTP server, and
// stops them in two phases: first intake (HTTP, MQTT), then — after in-flight work drained
// and was flushed — the stream itself.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/connector"
	"github.com/pulselake/pulselake/internal/durable"
	"github.com/pulselake/pulselake/internal/imports"
	"github.com/pulselake/pulselake/internal/ingest"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
	"github.com/pulselake/pulselake/internal/web"
)

// Options configures Run.
type Options struct {
	DataDir string
	Config  *config.Config
	Log     *slog.Logger
	// OnReady is called once everything accepts requests.
	OnReady func(*Running)
}

// Running describes a started server.
type Running struct {
	HTTPURL  string
	MQTTAddr string // "" when MQTT is off
	NATSURL  string // client URL of the embedded server, or the external cluster's
	// AdminTokenFile holds the admin token created on first start ("" if preset or existing).
	AdminTokenFile string
	Gatherer       prometheus.Gatherer
	Tokens         *token.Store
	Events         *web.Hub
	Alerts         *rules.Engine
}

// node is what the optional parts of serve are started with. Each part (streaming ECG
// classification, streaming anomaly detectors, scheduled pipelines, connectors) lives in its
// own file with a start function listed in parts; it may run processors with runProc
// (stopped after intake, before the lake writer's final flush) and register cleanups with
// onClose. The HTTP routes of every part are mounted in one place, mountRoutes.
type node struct {
	ctx      context.Context
	log      *slog.Logger
	reg      prometheus.Registerer
	cfg      *config.Config
	dataDir  string
	conn     *stream.Conn
	kinds    *reading.Registry
	hub      *web.Hub
	lake     *lakeParts
	alerting *alerting
	runProc  func(name string, run func(context.Context) error)
	// quarantine records the stream messages a processor terminated (quarantine.poison).
	quarantine func(context.Context, stream.Poisoned) error
	closers    []func()
	erasers    []memoryEraser // parts of memory that hold subjects' data (erase.go)
	ingester   *ingest.Ingester
	imports    *imports.Manager // uploaded exports (imports.go)
	// connectors are the wearable connections (connectors.go).
	connectors *connector.Manager
}

// onClose registers f to run when serve stops, after the processors stopped.
func (n *node) onClose(f func()) { n.closers = append(n.closers, f) }

func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
}

// parts are the optional parts of serve, started in this order.
var parts = []func(*node) error{startDetectors, startECG, startPipelines, startConnectors, startErase, startImports}

// lakeStopTimeout bounds the lake writer's final flush at shutdown; what it could not
// write stays in the stream and is written on the next start.
const lakeStopTimeout = time.Minute

// internalUser is the NATS user of pulselake's own connections.
const internalUser = "pulselake"

// Run serves until ctx is cancelled, then shuts down cleanly.
func Run(ctx context.Context, o Options) error {
	log, cfg := o.Log, o.Config
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	os.Remove(filepath.Join(o.DataDir, serveInfoFile)) // left behind by a killed serve
	kinds, err := cfg.Registry()
	if err != nil {
		return err
	}
	if m := cfg.Runtime.MemoryLimitBytes(); m > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(m) // docs/configuration.md, runtime.memory_limit
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Stream.
	password := randomHex(24)
	var tokens *token.Store
	var tokensMu sync.RWMutex
	verify := func(secret string) (token.Token, error) {
		tokensMu.RLock()
		defer tokensMu.RUnlock()
		if tokens == nil {
			return token.Token{}, token.ErrInvalid
		}
		return tokens.Verify(secret)
	}
	var srv *stream.Server
	if cfg.NATS.URL == "" {
		srv, err = stream.StartServer(log, stream.ServerOptions{
			Dir:          filepath.Join(o.DataDir, "stream"),
			ClientListen: off(cfg.NATS.Listen),
			MQTTListen:   off(cfg.MQTT.Listen),
			Auth:         &ingest.Auth{Verify: verify, InternalUser: internalUser, InternalPassword: password, Log: log.With("component", "nats-auth")},
		})
		if err != nil {
			return err
		}
		defer srv.Shutdown(context.Background())
	}
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{
		URL: cfg.NATS.URL, Server: srv, User: internalUserFor(cfg), Password: passwordFor(cfg, password),
		Name: "pulselake-serve", Replicas: cfg.NATS.Replicas, MaxAge: cfg.NATS.Retention.D(), MaxBytes: cfg.NATS.MaxBytes,
		DuplicateWindow: cfg.Ingest.DedupWindow.D(), PublishWait: cfg.Ingest.PublishWait.D(),
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Setup(ctx); err != nil {
		return err
	}
	reg.MustRegister(stream.NewLagCollector(conn))
	var space *stream.SpaceGuard
	if srv != nil {
		space = stream.NewSpaceGuard(log.With("component", "stream"), reg, srv, conn, cfg.NATS.MinFreeBytes)
		spaceCtx, stopSpace := context.WithCancel(context.Background())
		spaceDone := make(chan struct{})
		go func() { defer close(spaceDone); space.Run(spaceCtx) }()
		defer func() { stopSpace(); <-spaceDone }() // before the server stops
	}
	hwm := "" // the ingest stream's high-water mark lives beside an embedded store only
	if srv != nil {
		hwm = filepath.Join(o.DataDir, "stream", "ingest.hwm")
	}
	loss := stream.NewLossMonitor(log.With("component", "stream"), reg, conn, hwm)
	if err := loss.Check(ctx); err != nil {
		log.Warn("checking the streams for lost messages", "err", err)
	}

	// Tokens.
	ts, err := OpenTokens(ctx, log, conn)
	if err != nil {
		return err
	}
	defer ts.Close()
	tokensMu.Lock()
	tokens = ts
	tokensMu.Unlock()
	if srv != nil {
		ts.OnRevoke(func(t token.Token) {
			n, err := ingest.DisconnectToken(srv.NATS(), t.ID)
			switch {
			case err != nil:
				log.Error("closing the connections of a revoked token", "token", t.ID, "err", err)
			case n > 0:
				log.Info("closed the MQTT/NATS connections of a revoked token", "token", t.ID, "connections", n)
			}
		})
	}
	adminFile, err := bootstrapAdmin(ctx, log, ts, o.DataDir)
	if err != nil {
		return err
	}

	// Front doors.
	in := ingest.New(log.With("component", "ingest"), reg, kinds, conn.Publish, ingest.Options{
		MaxBatch: cfg.Ingest.MaxBatch, MaxBodyBytes: cfg.Ingest.MaxBodyBytes, MaxInflightBytes: cfg.Ingest.MaxInflightBytes,
		DedupWindow: cfg.Ingest.DedupWindow.D(), DedupMaxEntries: cfg.Ingest.DedupMaxEntries, BodyTimeout: cfg.Ingest.BodyTimeout.D(),
	})
	if err := in.Recover(ctx, conn); err != nil {
		return err
	}
	hub := web.NewHub(log.With("component", "events"), reg, conn, kinds)
	defer hub.Close()

	// Lake: the writer runs until the very end (after the processors, so that what they
	// produced is flushed); the ops buffer is a processor.
	lk, err := openLake(ctx, log, reg, cfg, o.DataDir, conn, kinds)
	if err != nil {
		return err
	}
	defer lk.close()
	lakeCtx, cancelLake := context.WithCancel(context.Background())
	defer cancelLake()
	lakeDone := make(chan error, 1)
	go func() { lakeDone <- lk.writer.Run(lakeCtx) }()
	defer func() {
		lk.writer.Stop()
		select {
		case err := <-lakeDone:
			if err != nil {
				log.Error("lake writer", "err", err)
			}
		case <-time.After(lakeStopTimeout):
			log.Error("lake writer did not finish its final flush; the rest is written on the next start", "timeout", lakeStopTimeout)
			cancelLake()
			<-lakeDone
		}
	}()

	// Processors: they consume the stream and stop after intake (second phase).
	procCtx, stopProcs := context.WithCancel(context.Background())
	defer stopProcs()
	var procs sync.WaitGroup
	runProc := func(name string, run func(context.Context) error) {
		procs.Add(1)
		go func() {
			defer procs.Done()
			if err := run(procCtx); err != nil && procCtx.Err() == nil {
				log.Error("processor stopped", "component", name, "err", err)
			}
		}()
	}
	runProc("lake-ops", lk.ops.Run)
	runProc("stream-loss", loss.Run)
	quarantine := quarantineTo(lk.ops)
	alerting, err := startAlerting(ctx, log, reg, cfg, conn, kinds, hub, ws0(cfg), lk.recordAlerts, quarantine)
	if err != nil {
		return err
	}
	defer alerting.close()
	runProc("notify", alerting.dispatcher.Run)
	runProc("rules", alerting.engine.Run)

	var started atomic.Bool // set once serve.json is written, so CLI commands can reach us
	ws := web.New(log.With("component", "http"), reg, web.Options{
		Listen: cfg.HTTP.Listen, Verify: verify, Ingester: in, Gatherer: reg,
		Ready: map[string]web.Check{"stream": streamReady(conn, space), "lake": lk.ready(), "startup": func(context.Context) error {
			if !started.Load() {
				return errors.New("still starting")
			}
			return nil
		}},
	})
	n := &node{ctx: ctx, log: log, reg: reg, cfg: cfg, dataDir: o.DataDir, conn: conn, kinds: kinds, hub: hub,
		lake: lk, alerting: alerting, runProc: runProc, quarantine: quarantine, ingester: in}
	defer n.close()
	for _, start := range parts {
		if err := start(n); err != nil {
			return err
		}
	}
	mountRoutes(ws, n)
	if err := ws.Start(); err != nil {
		return err
	}

	intakeCtx, stopIntake := context.WithCancel(context.Background())
	defer stopIntake()
	var intake sync.WaitGroup
	intake.Add(1)
	go func() {
		defer intake.Done()
		if err := in.RunMQTT(intakeCtx, conn); err != nil {
			log.Error("MQTT intake stopped", "err", err)
		}
	}()

	run := &Running{HTTPURL: ws.URL(), AdminTokenFile: adminFile, Gatherer: reg, Tokens: ts, NATSURL: cfg.NATS.URL, Events: hub, Alerts: alerting.engine}
	if srv != nil {
		run.MQTTAddr, run.NATSURL = srv.MQTTAddr(), srv.ClientURL()
	}
	if err := writeServeInfo(o.DataDir, run, password); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(o.DataDir, serveInfoFile))
	started.Store(true)
	log.Info("pulselake serving", "http", run.HTTPURL, "mqtt", run.MQTTAddr, "nats", run.NATSURL, "data", o.DataDir)
	if o.OnReady != nil {
		o.OnReady(run)
	}

	<-ctx.Done()
	log.Info("shutting down: stopping intake")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ws.Shutdown(shutCtx); err != nil {
		log.Warn("HTTP shutdown", "err", err)
	}
	stopIntake()
	intake.Wait()
	log.Info("intake stopped; stopping processors")
	stopProcs()
	procs.Wait()
	log.Info("processors stopped; closing the stream")
	return nil
}

// quarantineTo records the stream messages processors terminated in quarantine.poison,
// committed with the ops rows.
func quarantineTo(ops *lake.RowBuffer) func(context.Context, stream.Poisoned) error {
	return func(_ context.Context, p stream.Poisoned) error {
		for _, row := range lake.PoisonRows(p, time.Now()) {
			if !ops.Add(lake.ZoneQuarantine, lake.PoisonTable, lake.PoisonColumns, row) {
				return errors.New("the lake's row buffer is full; the record is dropped (the message stays in the stream for its retention)")
			}
		}
		return nil
	}
}

func off(addr string) string {
	if addr == "off" {
		return ""
	}
	return addr
}

func internalUserFor(cfg *config.Config) string {
	if cfg.NATS.URL != "" {
		return "" // credentials come with the URL
	}
	return internalUser
}

func passwordFor(cfg *config.Config, pw string) string {
	if cfg.NATS.URL != "" {
		return ""
	}
	return pw
}

func streamReady(conn *stream.Conn, space *stream.SpaceGuard) web.Check {
	return func(ctx context.Context) error {
		if space != nil {
			if err := space.Ready(ctx); err != nil {
				return err
			}
		}
		return conn.Ready(ctx)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// lockDataDir takes an exclusive lock so two processes never open one stream store.
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "pulselake.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data directory %s is in use by another pulselake process (%w); stop it or use another --data", dir, ErrDataDirBusy)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// ErrDataDirBusy means another process holds the data directory.
var ErrDataDirBusy = errors.New("data directory locked")

// AdminTokenFile is where the first admin token is written (mode 0600).
const AdminTokenFile = "admin-token"

func bootstrapAdmin(ctx context.Context, log *slog.Logger, ts *token.Store, dir string) (string, error) {
	if preset := os.Getenv("PULSELAKE_ADMIN_TOKEN"); preset != "" {
		if _, err := ts.Verify(preset); err == nil {
			return "", nil
		}
		t, err := ts.Import(ctx, preset, token.ScopeAdmin, "", "admin (PULSELAKE_ADMIN_TOKEN)")
		if err != nil {
			return "", fmt.Errorf("importing PULSELAKE_ADMIN_TOKEN: %w", err)
		}
		log.Info("admin token taken from PULSELAKE_ADMIN_TOKEN", "id", t.ID)
		return "", nil
	}
	if len(ts.List()) > 0 {
		return "", nil
	}
	secret, t, err := ts.Create(ctx, token.ScopeAdmin, "", "admin (first start)")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, AdminTokenFile)
	if err := durable.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing admin token: %w", err)
	}
	log.Info("created the first admin token; read it from the file (it is not logged)", "path", path, "id", t.ID)
	return path, nil
}

// serveInfo tells CLI commands how to reach a running serve on the same data directory.
type serveInfo struct {
	HTTP     string `json:"http"`
	NATS     string `json:"nats,omitempty"`
	MQTT     string `json:"mqtt,omitempty"`
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	PID      int    `json:"pid"`
}

const serveInfoFile = "serve.json"

func writeServeInfo(dir string, r *Running, password string) error {
	info := serveInfo{HTTP: r.HTTPURL, NATS: r.NATSURL, MQTT: r.MQTTAddr, PID: os.Getpid()}
	if r.NATSURL != "" && password != "" {
		info.User, info.Password = internalUser, password
	}
	data, _ := json.MarshalIndent(info, "", "  ")
	return durable.WriteFile(filepath.Join(dir, serveInfoFile), data, 0o600)
}
