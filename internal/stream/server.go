package stream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ServerOptions configures the embedded NATS server.
type ServerOptions struct {
	// Dir holds the JetStream file store (SPEC: <data>/stream).
	Dir string
	// ClientListen is the host:port of the NATS client listener ("127.0.0.1:0" picks a free
	// port); "" disables it, leaving only in-process connections.
	ClientListen string
	// MQTTListen is the host:port of the MQTT 3.1.1 listener; "" disables MQTT.
	MQTTListen string
	// Auth authenticates every client, NATS and MQTT; nil allows everybody (tests only).
	Auth server.Authentication
	// MaxPayload is the largest message in bytes (default 8 MiB).
	MaxPayload int32
	// ReadyTimeout bounds the wait for the server to accept connections (default 30 s).
	ReadyTimeout time.Duration
	// Cluster, when set, joins the server to its peers by routes with JetStream clustered.
	Cluster *ClusterOptions
}

// ClusterOptions joins an embedded server to a NATS cluster (docs/scale-out.md).
type ClusterOptions struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// ServerName is this node's name, unique in the cluster and stable across restarts.
	ServerName string
	// Listen is the route listener's host:port; Advertise what peers should dial instead.
	Listen, Advertise string
	// Routes are the nats://host:port route URLs of the nodes (this node's own may be listed).
	Routes []string
	// Replicas of the MQTT listener's streams (its sessions and retained messages).
	Replicas int
	// SyncAlways fsyncs every write before it is acknowledged; otherwise a write is
	// acknowledged once a quorum stored it and each node fsyncs every SyncInterval.
	SyncAlways   bool
	SyncInterval time.Duration
	// LeaderTimeout bounds the wait for a JetStream meta leader at start (default 2 min).
	LeaderTimeout time.Duration
	// TLS, when set, secures every route with mutual TLS (RouteTLS): a peer without a
	// certificate signed by the CA is refused, and so is a plain-text route.
	TLS *tls.Config
	// Secret, when set, is required of every route (user RouteUser, password Secret), and
	// presented on every route this node connects: a peer without it is refused.
	Secret string
}

// Security describes how the routes are secured, for the log.
func (c *ClusterOptions) Security() string {
	switch {
	case c.TLS != nil && c.Secret != "":
		return "mutual TLS and secret"
	case c.TLS != nil:
		return "mutual TLS"
	case c.Secret != "":
		return "secret, not encrypted"
	}
	return "none"
}

// Server is an embedded NATS server with JetStream (file store, fsync on every write).
type Server struct {
	ns       *server.Server
	log      *slog.Logger
	mqttAddr string
	dir      string                  // the store directory given (JetStream adds "jetstream")
	jsCfg    *server.JetStreamConfig // as started, to turn JetStream on again (SpaceGuard)
	werr     *writeErr               // set when the store reports a failed write
}

// writeErr remembers the last failed write the NATS server logged. The server (v2.15)
// marks a stream or consumer whose file store failed a write (e.g. disk full) as failed for
// good: every later write to it fails too, publishes get no answer, until JetStream is
// restarted. It reports that only in its log.
type writeErr struct {
	mu  sync.Mutex
	msg string
	at  time.Time
}

func (w *writeErr) set(msg string) {
	w.mu.Lock()
	w.msg, w.at = msg, time.Now()
	w.mu.Unlock()
}

func (w *writeErr) get() (string, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.msg, w.at
}

func (w *writeErr) clear() {
	w.mu.Lock()
	w.msg = ""
	w.mu.Unlock()
}

// DefaultMaxPayload is the embedded server's largest message (a batch envelope).
const DefaultMaxPayload = 8 << 20

// mqttStoreTimeout bounds the wait of the MQTT listener for JetStream's acknowledgement of a
// stored QoS 1 message before it gives up on the device's connection.
const mqttStoreTimeout = 30 * time.Second

// MaxPending is the most bytes the embedded server queues for one client (256 MiB).
const MaxPending = 256 << 20

// StartServer starts an embedded NATS server and waits until it accepts connections.
func StartServer(log *slog.Logger, o ServerOptions) (*Server, error) {
	if o.MaxPayload == 0 {
		o.MaxPayload = DefaultMaxPayload
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	var mqttAddr string
	opts := &server.Options{
		ServerName: "pulselake",
		JetStream:  true,
		StoreDir:   filepath.Clean(o.Dir),
		SyncAlways: true,
		MaxPayload: o.MaxPayload,
		// A client whose unsent messages exceed MaxPending is disconnected as a slow
		// consumer. pulselake's own consumers bound what they pull (FollowerPullBytes
		// each), so their sum stays well below this and the internal connection is never
		// dropped; a slow external subscriber is cut off at this size.
		MaxPending:                 MaxPending,
		NoSigs:                     true,
		NoLog:                      true,
		CustomClientAuthentication: o.Auth,
		DontListen:                 o.ClientListen == "",
		Port:                       -1,
		Host:                       "127.0.0.1",
		HTTPPort:                   0,
	}
	if o.ClientListen != "" {
		host, port, err := splitHostPort(o.ClientListen)
		if err != nil {
			return nil, fmt.Errorf("parsing NATS listen address: %w", err)
		}
		if port == 0 {
			port = -1 // NATS reads 0 as its default port 4222; -1 picks a free one
		}
		opts.Host, opts.Port = host, port
	}
	if o.MQTTListen != "" {
		host, port, err := splitHostPort(o.MQTTListen)
		if err != nil {
			return nil, fmt.Errorf("parsing MQTT listen address: %w", err)
		}
		if port == 0 {
			// The server does not report the port it picked; pick one here.
			if port, err = freePort(host); err != nil {
				return nil, fmt.Errorf("finding a free MQTT port: %w", err)
			}
		} else if err := portAvailable(host, port); err != nil {
			// The server would only log this and never become ready; say it at once.
			return nil, fmt.Errorf("MQTT listen address %s is not available (%w): stop what listens there, or choose another with --mqtt ADDR or mqtt.listen (\"off\" disables MQTT)", net.JoinHostPort(host, strconv.Itoa(port)), err)
		}
		opts.MQTT.Host, opts.MQTT.Port = host, port
		mqttAddr = net.JoinHostPort(host, strconv.Itoa(port))
		// A QoS 1 PUBACK waits for the JetStream store of the message (on a cluster, its
		// replication to a quorum). The server closes a device's connection when a store is
		// not acknowledged within JSAPITimeout (default 5 s), and the device then loses the
		// window of messages it had in flight: under a burst the store queue is longer than
		// that, so allow as long as a publish of pulselake's own (PublishTimeout, ackTimeout).
		opts.MQTT.JSAPITimeout = mqttStoreTimeout
		// How long a QoS 1 message delivered to an MQTT subscriber waits for its PUBACK.
		opts.MQTT.AckWait = 30 * time.Second
	}
	if o.Cluster != nil {
		if err := clusterOpts(opts, o.Cluster); err != nil {
			return nil, err
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("creating NATS server: %w", err)
	}
	werr := &writeErr{}
	ns.SetLoggerV2(natsLogger{log: log.With("component", "nats"), werr: werr}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(o.ReadyTimeout) {
		ns.Shutdown()
		return nil, fmt.Errorf("starting NATS server: not ready after %s (is %s or %s in use?)", o.ReadyTimeout, o.ClientListen, o.MQTTListen)
	}
	s := &Server{ns: ns, log: log, mqttAddr: mqttAddr, dir: filepath.Clean(o.Dir), jsCfg: ns.JetStreamConfig(), werr: werr}
	if o.Cluster != nil {
		warnRouteSecurity(log, o.Cluster)
		if err := s.waitForMetaLeader(o.Cluster); err != nil {
			ns.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number 0..65535", p)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// ClientURL is the URL of the NATS client listener ("" when it is disabled).
func (s *Server) ClientURL() string {
	if s.ns.Addr() == nil {
		return ""
	}
	return s.ns.ClientURL()
}

// MQTTAddr is the host:port of the MQTT listener, "" when MQTT is disabled.
func (s *Server) MQTTAddr() string { return s.mqttAddr }

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portAvailable reports whether host:port can be listened on, by listening and closing.
func portAvailable(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		var se *os.SyscallError
		if errors.As(err, &se) {
			return se // "bind: address already in use", without the repeated address
		}
		return err
	}
	return l.Close()
}

// NATS returns the embedded server, for in-process connections.
func (s *Server) NATS() *server.Server { return s.ns }

// Shutdown stops the server after its connections have been closed and waits for it.
func (s *Server) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn("NATS server did not stop in time")
	}
}

// natsLogger routes the server's log lines to slog, and notes failed writes of the store.
type natsLogger struct {
	log  *slog.Logger
	werr *writeErr
}

// Noticef logs the server's notices at debug level, except those that mean a client lost
// messages or its connection.
func (l natsLogger) Noticef(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "Slow Consumer") {
		l.log.Error("NATS server: "+msg+"; the client's connection is closed", "hint", "a consumer pulls more than it reads; see docs/architecture.md (back-pressure)")
		return
	}
	l.log.Debug(msg)
}
func (l natsLogger) Warnf(format string, v ...any)  { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.Contains(msg, "critical write error") || strings.Contains(msg, "will be DISABLED") {
		l.werr.set(msg)
	}
	l.log.Error(msg)
}
func (l natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any) {}

// clusterOpts sets the route listener, the routes and clustered JetStream on opts.
func clusterOpts(opts *server.Options, c *ClusterOptions) error {
	host, port, err := splitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("parsing cluster listen address: %w", err)
	}
	if port == 0 {
		return fmt.Errorf("cluster listen address %s needs a fixed port: the other nodes' routes name it", c.Listen)
	}
	routes := server.RoutesFromStr(strings.Join(c.Routes, ","))
	if len(routes) != len(c.Routes) {
		return fmt.Errorf("parsing cluster routes %v: want nats://host:port each", c.Routes)
	}
	if opts.DontListen {
		// The server starts routing only once its client listener is open.
		opts.DontListen, opts.Host, opts.Port = false, "127.0.0.1", -1
	}
	opts.ServerName = c.ServerName
	opts.Cluster.Name = c.Name
	opts.Cluster.Host, opts.Cluster.Port = host, port
	opts.Cluster.Advertise = c.Advertise
	// Keep dialling a peer that is down (a node being restarted) for ever, backing off.
	opts.Cluster.ConnectRetries = -1
	opts.Cluster.ConnectBackoff = true
	opts.Routes = routes
	if c.TLS != nil {
		opts.Cluster.TLSConfig = c.TLS.Clone()
		opts.Cluster.TLSTimeout = routeTLSTimeout.Seconds()
	}
	if c.Secret != "" {
		opts.Routes = withSecret(routes, c.Secret)
		// Also presented on the routes the server learns of from its peers.
		opts.Cluster.Username, opts.Cluster.Password = RouteUser, c.Secret
		opts.CustomRouterAuthentication = routeAuth{sum: sha256.Sum256([]byte(c.Secret))}
	}
	opts.SyncAlways = c.SyncAlways
	if !c.SyncAlways && c.SyncInterval > 0 {
		opts.SyncInterval = c.SyncInterval
	}
	opts.MQTT.StreamReplicas = c.Replicas
	return nil
}

// warnRouteSecurity warns when the route listener is reachable from other machines and the
// routes are not both encrypted and authenticated (configuration refuses that unless
// cluster.insecure is set).
func warnRouteSecurity(log *slog.Logger, c *ClusterOptions) {
	host, _, _ := net.SplitHostPort(c.Listen)
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return
	}
	switch {
	case c.TLS == nil && c.Secret == "":
		log.Warn("cluster routes are neither encrypted nor authenticated: whoever reaches "+c.Listen+" can join the cluster and read every reading; "+
			"set cluster.tls and cluster.secret_file (docs/scale-out.md, Security)", "listen", c.Listen)
	case c.TLS == nil:
		log.Warn("cluster routes are authenticated by the cluster's secret but not encrypted: readings cross the network in plain text; "+
			"set cluster.tls (docs/scale-out.md, Security)", "listen", c.Listen)
	}
}

// waitForMetaLeader waits until the cluster's JetStream has elected a meta leader (which
// needs a majority of the nodes up) and this node is current with it: before that no stream
// can be created or found.
func (s *Server) waitForMetaLeader(c *ClusterOptions) error {
	timeout := c.LeaderTimeout
	if timeout <= 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	nextLog := time.Now().Add(5 * time.Second)
	for {
		info, err := s.ns.Jsz(&server.JSzOptions{})
		// Known leader, and this node has applied what it leads with: before that, requests
		// about streams may find no responder.
		if err == nil && info.Meta != nil && info.Meta.Leader != "" && s.ns.JetStreamIsCurrent() {
			s.log.Info("joined the NATS cluster", "cluster", c.Name, "node", c.ServerName, "meta_leader", info.Meta.Leader,
				"route_connections", s.ns.NumRoutes(), "route_security", c.Security())
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("joining NATS cluster %s: no JetStream leader after %s (%d route connections to other nodes); "+
				"a majority of the nodes in cluster.routes must be running, reach each other's cluster.listen port and share the cluster's CA and secret "+
				"(a refused route is logged by the node that refused it)",
				c.Name, timeout, s.ns.NumRoutes())
		}
		if time.Now().After(nextLog) {
			s.log.Info("waiting for the other cluster nodes to elect a JetStream leader", "connected_routes", s.ns.NumRoutes(), "routes", c.Routes)
			nextLog = time.Now().Add(10 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
