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
	// runLeader runs a processor whose effects must happen once per cluster (cluster.go).
	runLeader func(leaderProc)
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
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data directory: %w", err)
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	os.Remove(filepath.Join(o.DataDir, serveInfoFile)) // left behind by a killed serve
	kinds, err := o.Config.Registry()
	if err != nil {
		return err
	}
	if m := o.Config.Runtime.MemoryLimitBytes(); m > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(m) // docs/configuration.md, runtime.memory_limit
	}

	s := &server{o: o, log: o.Log, cfg: o.Config, kinds: kinds, reg: prometheus.NewRegistry(), password: randomHex(24)}
	defer s.cleanUp()
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, phase := range []func(context.Context) error{
		s.openStream, s.openTokens, s.openFrontDoors, s.startLake, s.startProcessors, s.startParts, s.startIntake,
	} {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	<-ctx.Done()
	s.shutDown()
	return nil
}

// server is what Run starts, phase by phase. Each phase registers with deferred how to undo
// what it started; cleanUp runs those in reverse order, as defers in one function would.
type server struct {
	o        Options
	log      *slog.Logger
	cfg      *config.Config
	kinds    *reading.Registry
	reg      *prometheus.Registry
	password string // of the internal NATS user
	deferred []func()

	tokensMu sync.RWMutex
	tokens   *token.Store // nil until openTokens

	srv       *stream.Server // nil with an external NATS cluster
	conn      *stream.Conn
	space     *stream.SpaceGuard
	loss      *stream.LossMonitor
	adminFile string
	in        *ingest.Ingester
	hub       *web.Hub
	lk        *lakeParts

	procs     sync.WaitGroup
	stopProcs context.CancelFunc
	// runProc runs a processor until the processors stop (startProcessors).
	runProc func(name string, run func(context.Context) error)
	// leaders runs the processors that run once per cluster (cluster.go); nil on one node.
	leaders *leadership
	// quarantine records the stream messages a processor terminated (quarantine.poison).
	quarantine func(context.Context, stream.Poisoned) error
	alerting   *alerting

	ws         *web.Server
	started    atomic.Bool // set once serve.json is written, so CLI commands can reach us
	intake     sync.WaitGroup
	stopIntake context.CancelFunc
}

// deferLast registers f to run when Run returns, before everything registered earlier.
func (s *server) deferLast(f func()) { s.deferred = append(s.deferred, f) }

func (s *server) cleanUp() {
	for i := len(s.deferred) - 1; i >= 0; i-- {
		s.deferred[i]()
	}
}

// verify checks the secret of an HTTP, MQTT or NATS client against the token store.
func (s *server) verify(secret string) (token.Token, error) {
	s.tokensMu.RLock()
	defer s.tokensMu.RUnlock()
	if s.tokens == nil {
		return token.Token{}, token.ErrInvalid
	}
	return s.tokens.Verify(secret)
}

// openStream starts the embedded NATS server (unless an external one is configured),
// connects to it, creates the streams, and watches its disk space and lost messages.
func (s *server) openStream(ctx context.Context) error {
	log, cfg := s.log, s.cfg
	if cfg.NATS.URL == "" {
		cluster, err := clusterServer(cfg)
		if err != nil {
			return err
		}
		srv, err := stream.StartServer(log, stream.ServerOptions{
			Dir:          filepath.Join(s.o.DataDir, "stream"),
			ClientListen: off(cfg.NATS.Listen),
			MQTTListen:   off(cfg.MQTT.Listen),
			Auth:         &ingest.Auth{Verify: s.verify, InternalUser: internalUser, InternalPassword: s.password, Log: log.With("component", "nats-auth")},
			Cluster:      cluster,
		})
		if err != nil {
			return err
		}
		s.srv = srv
		s.deferLast(func() { srv.Shutdown(context.Background()) })
	}
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{
		URL: cfg.NATS.URL, Server: s.srv, User: internalUserFor(cfg), Password: passwordFor(cfg, s.password),
		Name: "pulselake-serve", Replicas: replicas(cfg), MaxAge: cfg.NATS.Retention.D(), MaxBytes: cfg.NATS.MaxBytes,
		DuplicateWindow: cfg.Ingest.DedupWindow.D(), PublishWait: cfg.Ingest.PublishWait.D(),
	})
	if err != nil {
		return err
	}
	s.conn = conn
	s.deferLast(func() { conn.Close() })
	setupCtx, cancelSetup := ctx, context.CancelFunc(func() {})
	if cfg.Cluster.Enabled { // the first start of a cluster waits for every node to place the replicas
		setupCtx, cancelSetup = context.WithTimeout(ctx, cfg.Cluster.StartTimeout.D())
	}
	err = conn.Setup(setupCtx)
	cancelSetup()
	if err != nil {
		return err
	}
	s.reg.MustRegister(stream.NewLagCollector(conn))
	if s.srv != nil {
		space := stream.NewSpaceGuard(log.With("component", "stream"), s.reg, s.srv, conn, cfg.NATS.MinFreeBytes)
		s.space = space
		spaceCtx, stopSpace := context.WithCancel(context.Background())
		spaceDone := make(chan struct{})
		go func() { defer close(spaceDone); space.Run(spaceCtx) }()
		s.deferLast(func() { stopSpace(); <-spaceDone }) // before the server stops
	}
	// The ingest stream's high-water mark lives beside an embedded store only; a cluster
	// node's replica catches up from the others after a restart, so it is not compared.
	hwm := ""
	if s.srv != nil && !cfg.Cluster.Enabled {
		hwm = filepath.Join(s.o.DataDir, "stream", "ingest.hwm")
	}
	s.loss = stream.NewLossMonitor(log.With("component", "stream"), s.reg, conn, hwm)
	// A restarted cluster node's replicas are still catching up from the others: comparing
	// them with the consumers' positions now would report losses that are not there.
	if !cfg.Cluster.Enabled {
		if err := s.loss.Check(ctx); err != nil {
			log.Warn("checking the streams for lost messages", "err", err)
		}
	}
	return nil
}

// openTokens opens the token store, closes the connections of revoked tokens, and creates
// the first admin token.
func (s *server) openTokens(ctx context.Context) error {
	log := s.log
	ts, err := OpenTokens(ctx, log, s.conn)
	if err != nil {
		return err
	}
	s.deferLast(func() { ts.Close() })
	s.tokensMu.Lock()
	s.tokens = ts
	s.tokensMu.Unlock()
	if srv := s.srv; srv != nil {
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
	s.adminFile, err = bootstrapAdmin(ctx, log, ts, s.o.DataDir)
	return err
}

// openFrontDoors creates the ingester (recovering its de-duplication window) and the event hub.
func (s *server) openFrontDoors(ctx context.Context) error {
	cfg := s.cfg
	s.in = ingest.New(s.log.With("component", "ingest"), s.reg, s.kinds, s.conn.Publish, ingest.Options{
		MaxBatch: cfg.Ingest.MaxBatch, MaxBodyBytes: cfg.Ingest.MaxBodyBytes, MaxInflightBytes: cfg.Ingest.MaxInflightBytes,
		DedupWindow: cfg.Ingest.DedupWindow.D(), DedupMaxEntries: cfg.Ingest.DedupMaxEntries, BodyTimeout: cfg.Ingest.BodyTimeout.D(),
	})
	if err := s.recoverDedup(ctx); err != nil {
		return err
	}
	s.hub = web.NewHub(s.log.With("component", "events"), s.reg, s.conn, s.kinds)
	s.deferLast(s.hub.Close)
	return nil
}

// startLake opens the lake and starts its writer.
func (s *server) startLake(ctx context.Context) error {
	log := s.log
	// Lake: the writer runs until the very end (after the processors, so that what they
	// produced is flushed); the ops buffer is a processor.
	lk, err := openLake(ctx, log, s.reg, s.cfg, s.o.DataDir, s.conn, s.kinds)
	if err != nil {
		return err
	}
	s.lk = lk
	s.deferLast(lk.close)
	lakeCtx, cancelLake := context.WithCancel(context.Background())
	s.deferLast(cancelLake)
	lakeDone := make(chan error, 1)
	lakeStopped := make(chan struct{})
	go func() { lakeDone <- runLakeWriter(lakeCtx, log, lk.writer, shared(s.cfg), lakeStopped) }()
	s.deferLast(func() {
		close(lakeStopped)
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
	})
	return nil
}

// startProcessors starts the lake's ops buffer, the loss monitor and alerting.
func (s *server) startProcessors(ctx context.Context) error {
	// Processors: they consume the stream and stop after intake (second phase).
	procCtx, stopProcs := context.WithCancel(context.Background())
	s.stopProcs = stopProcs
	s.deferLast(stopProcs)
	s.runProc = func(name string, run func(context.Context) error) {
		s.procs.Add(1)
		go func() {
			defer s.procs.Done()
			if err := run(procCtx); err != nil && procCtx.Err() == nil {
				s.log.Error("processor stopped", "component", name, "err", err)
			}
		}()
	}
	if shared(s.cfg) {
		s.leaders = newLeadership(s.log.With("component", "cluster"), s.reg, s.conn, leaseTTL(s.cfg))
	}
	s.runProc("lake-ops", s.lk.ops.Run)
	s.runProc("stream-loss", s.loss.Run)
	s.quarantine = quarantineTo(s.lk.ops)
	alerting, err := startAlerting(ctx, s.log, s.reg, s.cfg, s.conn, s.kinds, s.hub, ws0(s.cfg), s.lk.recordAlerts, s.quarantine)
	if err != nil {
		return err
	}
	s.alerting = alerting
	s.deferLast(alerting.close)
	// The dispatcher runs on every node; only the node running the rule engine and the
	// detectors (the processors lease holder on a cluster) hands it alerts.
	s.runProc("notify", alerting.dispatcher.Run)
	eng := alerting.engine
	s.runLeader(leaderProc{name: "rules", run: func(ctx context.Context) error {
		if s.leaders != nil { // another node may have run the rules and notified since this one started
			if err := eng.Restore(ctx); err != nil {
				return err
			}
			if err := alerting.dispatcher.ReloadLog(ctx); err != nil {
				return err
			}
		}
		return eng.Run(ctx)
	}, standby: func(ctx context.Context) error { return followAlertState(ctx, s.log, eng) }})
	return nil
}

// startParts creates the HTTP server, starts the optional parts, mounts the routes and
// starts listening.
func (s *server) startParts(ctx context.Context) error {
	s.ws = web.New(s.log.With("component", "http"), s.reg, web.Options{
		Listen: s.cfg.HTTP.Listen, Verify: s.verify, Ingester: s.in, Gatherer: s.reg,
		Ready: map[string]web.Check{"stream": streamReady(s.conn, s.space), "lake": s.lk.ready(), "startup": func(context.Context) error {
			if !s.started.Load() {
				return errors.New("still starting")
			}
			return nil
		}},
	})
	n := &node{ctx: ctx, log: s.log, reg: s.reg, cfg: s.cfg, dataDir: s.o.DataDir, conn: s.conn, kinds: s.kinds, hub: s.hub,
		lake: s.lk, alerting: s.alerting, runProc: s.runProc, runLeader: s.runLeader, quarantine: s.quarantine, ingester: s.in}
	s.deferLast(n.close)
	for _, start := range parts {
		if err := start(n); err != nil {
			return err
		}
	}
	if s.leaders != nil {
		s.runProc("cluster-processors", s.leaders.Run)
	}
	mountRoutes(s.ws, n)
	return s.ws.Start()
}

// startIntake starts MQTT intake, writes serve.json and reports that everything is ready.
func (s *server) startIntake(context.Context) error {
	intakeCtx, stopIntake := context.WithCancel(context.Background())
	s.stopIntake = stopIntake
	s.deferLast(stopIntake)
	s.intake.Add(1)
	go func() {
		defer s.intake.Done()
		if err := s.in.RunMQTT(intakeCtx, s.conn); err != nil {
			s.log.Error("MQTT intake stopped", "err", err)
		}
	}()

	run := &Running{HTTPURL: s.ws.URL(), AdminTokenFile: s.adminFile, Gatherer: s.reg, Tokens: s.tokens, NATSURL: s.cfg.NATS.URL, Events: s.hub, Alerts: s.alerting.engine}
	if s.srv != nil {
		run.MQTTAddr, run.NATSURL = s.srv.MQTTAddr(), s.srv.ClientURL()
	}
	if err := writeServeInfo(s.o.DataDir, run, s.password); err != nil {
		return err
	}
	s.deferLast(func() { os.Remove(filepath.Join(s.o.DataDir, serveInfoFile)) })
	s.started.Store(true)
	s.log.Info("pulselake serving", "http", run.HTTPURL, "mqtt", run.MQTTAddr, "nats", run.NATSURL, "data", s.o.DataDir)
	if s.o.OnReady != nil {
		s.o.OnReady(run)
	}
	return nil
}

// shutDown stops intake, then the processors; cleanUp then stops the rest, the lake
// writer's final flush first and the stream last.
func (s *server) shutDown() {
	s.log.Info("shutting down: stopping intake")
	shutCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.ws.Shutdown(shutCtx); err != nil {
		s.log.Warn("HTTP shutdown", "err", err)
	}
	s.stopIntake()
	s.intake.Wait()
	s.log.Info("intake stopped; stopping processors")
	s.stopProcs()
	s.procs.Wait()
	s.log.Info("processors stopped; closing the stream")
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
