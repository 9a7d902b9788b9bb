package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Cluster configures `serve --cluster` (SPEC §12, docs/scale-out.md): each node's embedded
// NATS server joins its peers by routes, and streams and KV buckets are replicated.
type Cluster struct {
	// Enabled is set by `serve --cluster`; it is not a key of the file.
	Enabled bool `yaml:"-"`
	// Name is the NATS cluster's name, the same on every node (default "pulselake").
	Name string `yaml:"name"`
	// NodeName names this node's NATS server, unique in the cluster and stable across
	// restarts: JetStream knows its peers by it (default <hostname>-<listen port>).
	NodeName string `yaml:"node_name"`
	// Listen is the host:port of the route listener the other nodes connect to (default
	// 0.0.0.0:6222).
	Listen string `yaml:"listen"`
	// Advertise is the host:port the other nodes reach this node's routes at, when it differs
	// from Listen (NAT, containers, a 0.0.0.0 listener). Default: what the server finds.
	Advertise string `yaml:"advertise"`
	// Routes are nats://host:port URLs of every node's route listener; listing the node's
	// own is fine (the same list on every node is simplest).
	Routes []string `yaml:"routes"`
	// Replicas of every stream and KV bucket (default 3); at most the number of nodes.
	Replicas int `yaml:"replicas"`
	// SyncAlways fsyncs every write on every replica before it is acknowledged, as the single
	// node does (default false: a write is acknowledged once a quorum of nodes stored it, and
	// each node fsyncs every SyncInterval). docs/scale-out.md, Durability.
	SyncAlways bool `yaml:"sync_always"`
	// SyncInterval is how often each node fsyncs its store when SyncAlways is off (default
	// 2m, NATS's own default).
	SyncInterval yamlconf.Duration `yaml:"sync_interval"`
	// LeaseTTL is how long the leases of the lake writer and of the cluster's processors
	// (rules, notifications, detectors, ECG, pipelines, connectors) outlive a node that
	// stopped renewing them (killed, cut off); another node takes over after at most this
	// long (default 30s, 5s..10m). Use the same value on every node.
	LeaseTTL yamlconf.Duration `yaml:"lease_ttl"`
	// StartTimeout bounds the wait for the cluster's JetStream to elect a leader at start,
	// which needs a majority of the nodes up (default 2m).
	StartTimeout yamlconf.Duration `yaml:"start_timeout"`
	// TLS secures the routes with mutual TLS: every node presents its certificate and
	// verifies its peers' against the CA (docs/scale-out.md, Security).
	TLS ClusterTLS `yaml:"tls"`
	// Secret is required of every route and presented on the routes this node connects: a
	// peer without it is refused. SecretFile is a file holding it instead (its first line),
	// which keeps it out of this file. At least 16 characters; the same on every node.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Insecure allows routes without TLS and secret on a listener other machines can reach
	// (or to routes on other machines). Without it serve refuses to start so.
	Insecure bool `yaml:"insecure"`
}

// ClusterTLS names the PEM files of a node's route certificate, its private key, and the CA
// that signs every node's certificate. Relative paths are relative to the configuration
// file's directory.
type ClusterTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// set reports whether any of the files is given.
func (t ClusterTLS) set() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// minSecretLen is the shortest cluster secret accepted.
const minSecretLen = 16

func defaultCluster() Cluster {
	return Cluster{
		Name: "pulselake", Listen: "0.0.0.0:6222", Replicas: 3,
		SyncInterval: yamlconf.Duration(2 * time.Minute),
		LeaseTTL:     yamlconf.Duration(30 * time.Second),
		StartTimeout: yamlconf.Duration(2 * time.Minute),
	}
}

// Node is the NATS server name of this node: NodeName, or <hostname>-<listen port>.
func (c Cluster) Node() string {
	if c.NodeName != "" {
		return c.NodeName
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "pulselake"
	}
	_, port, _ := net.SplitHostPort(c.Listen)
	return host + "-" + port
}

// Nodes is the number of nodes the routes describe: one per route, plus this node when
// its own listener is not among them.
func (c Cluster) Nodes() int {
	n := len(c.Routes)
	_, lport, _ := net.SplitHostPort(c.Listen)
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil {
			continue
		}
		if (c.Advertise != "" && u.Host == c.Advertise) || u.Host == c.Listen || (u.Port() == lport && isLocalHost(u.Hostname())) {
			return n
		}
	}
	return n + 1
}

// isLocalHost reports whether host names this machine (loopback, its name or one of its
// addresses).
func isLocalHost(host string) bool {
	if host == "localhost" {
		return true
	}
	if name, _ := os.Hostname(); name != "" && strings.EqualFold(host, name) {
		return true
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// Exposed reports whether routes may cross the network: the route listener is not on a
// loopback address, or a route names another host.
func (c Cluster) Exposed() bool {
	if host, _, err := net.SplitHostPort(c.Listen); err == nil && !isLoopback(host) {
		return true
	}
	for _, r := range c.Routes {
		if u, err := url.Parse(r); err == nil && !isLoopback(u.Hostname()) {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// path resolves a file name of the configuration: relative to its directory.
func (c *Config) path(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(c.Dir(), name)
}

// ClusterTLS is the mutual TLS configuration of the routes, nil when cluster.tls is not set.
func (c *Config) ClusterTLS() (*tls.Config, error) {
	t := c.Cluster.TLS
	if !t.set() {
		return nil, nil
	}
	return stream.RouteTLS(c.path(t.Cert), c.path(t.Key), c.path(t.CA))
}

// ClusterSecret is the routes' secret: cluster.secret, or the first line of
// cluster.secret_file; "" when neither is set.
func (c *Config) ClusterSecret() (string, error) {
	cl := c.Cluster
	if cl.SecretFile == "" {
		return cl.Secret, nil
	}
	name := c.path(cl.SecretFile)
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("reading the cluster secret: %w", err)
	}
	s, _, _ := strings.Cut(string(b), "\n")
	if s = strings.TrimSpace(s); s == "" {
		return "", fmt.Errorf("%s is empty: put the cluster's secret in it (e.g. openssl rand -hex 32 > %s)", name, name)
	}
	return s, nil
}

// validateRouteSecurity checks the routes' TLS files and secret, and refuses routes that may
// cross the network with neither (unless cluster.insecure) on a node of a cluster: with
// --cluster, or whenever routes are listed, so that check config finds it too.
func (c *Config) validateRouteSecurity(ps *Problems) {
	cl := c.Cluster
	hasTLS := cl.TLS.set() // when its files have problems, those are what to fix
	if t := cl.TLS; t.set() {
		missing := false
		for _, k := range []struct{ key, val string }{{"cert", t.Cert}, {"key", t.Key}, {"ca", t.CA}} {
			if k.val == "" {
				ps.Add("cluster.tls."+k.key, "required with cluster.tls: give cert (this node's certificate), key (its private key) and ca (the CA that signs every node's certificate), PEM files")
				missing = true
			}
		}
		if !missing {
			tc, err := c.ClusterTLS()
			var re *stream.RouteTLSError
			switch {
			case errors.As(err, &re):
				ps.Add("cluster.tls."+re.Key, "%v", re.Err)
			case err != nil:
				ps.Add("cluster.tls", "%v", err)
			default:
				c.checkCertNames(ps, tc)
			}
		}
	}
	hasSecret := cl.Secret != "" || cl.SecretFile != ""
	switch {
	case cl.Secret != "" && cl.SecretFile != "":
		ps.Add("cluster.secret_file", "give secret or secret_file, not both")
	case hasSecret:
		path := "cluster.secret"
		if cl.SecretFile != "" {
			path = "cluster.secret_file"
		}
		if s, err := c.ClusterSecret(); err != nil {
			ps.Add(path, "%v", err)
		} else if len(s) < minSecretLen {
			ps.Add(path, "the secret is %d characters; use at least %d (e.g. openssl rand -hex 32)", len(s), minSecretLen)
		}
	}
	if hasTLS || hasSecret || cl.Insecure || !cl.Exposed() || (!cl.Enabled && len(cl.Routes) == 0) {
		return
	}
	path := "cluster.listen"
	if host, _, err := net.SplitHostPort(cl.Listen); err == nil && isLoopback(host) {
		path = "cluster.routes"
	}
	ps.Add(path, "the cluster's routes would cross the network with neither TLS nor a secret: whoever reaches the route port could join "+
		"the cluster and read every reading. Set cluster.tls {cert, key, ca} and cluster.secret_file (docs/scale-out.md, Security, "+
		"shows how to make them with openssl), or keep the cluster on loopback addresses, or set cluster.insecure: true to run so anyway")
}

// checkCertNames checks that the route certificate names the host the other nodes dial this
// node at (cluster.advertise, and this node's own entry of cluster.routes), which they verify.
func (c *Config) checkCertNames(ps *Problems, tc *tls.Config) {
	leaf := tc.Certificates[0].Leaf
	cl := c.Cluster
	var hosts []string
	if cl.Advertise != "" {
		if h, _, err := net.SplitHostPort(cl.Advertise); err == nil {
			hosts = append(hosts, h)
		}
	}
	if _, lport, err := net.SplitHostPort(cl.Listen); err == nil {
		for _, r := range cl.Routes {
			if u, err := url.Parse(r); err == nil && (u.Host == cl.Listen || (u.Port() == lport && isLocalHost(u.Hostname()))) {
				hosts = append(hosts, u.Hostname())
			}
		}
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			names := append([]string(nil), leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				names = append(names, ip.String())
			}
			ps.Add("cluster.tls.cert", "%s names %v, but the other nodes dial this node at %s and check that it names it: make it with subjectAltName including %s (docs/scale-out.md, Security)",
				cl.TLS.Cert, names, h, h)
			return
		}
	}
}

// validateCluster checks the cluster section; most of it only when serve runs with --cluster.
func (c *Config) validateCluster(ps *Problems) {
	cl := c.Cluster
	if cl.Replicas < 1 || cl.Replicas > 5 {
		ps.Add("cluster.replicas", "must be 1..5 (3 survives the loss of one node), got %d", cl.Replicas)
	}
	if d := cl.LeaseTTL.D(); d < 5*time.Second || d > 10*time.Minute {
		ps.Add("cluster.lease_ttl", "must be 5s..10m, got %s", d)
	}
	if d := cl.SyncInterval.D(); d < time.Second || d > time.Hour {
		ps.Add("cluster.sync_interval", "must be 1s..1h, got %s", d)
	}
	if d := cl.StartTimeout.D(); d < time.Second {
		ps.Add("cluster.start_timeout", "must be at least 1s, got %s", d)
	}
	if cl.Name == "" || strings.ContainsAny(cl.Name, " \t.*>") {
		ps.Add("cluster.name", "must be a name without spaces, dots, * or >, got %q", cl.Name)
	}
	if strings.ContainsAny(cl.NodeName, " \t") {
		ps.Add("cluster.node_name", "must not contain spaces, got %q", cl.NodeName)
	}
	if _, port, err := splitAddr(cl.Listen); err != nil {
		ps.Add("cluster.listen", "want host:port (e.g. 0.0.0.0:6222): %v", err)
	} else if port == "0" {
		ps.Add("cluster.listen", "needs a fixed port: the other nodes' routes name it")
	}
	if cl.Advertise != "" {
		if _, _, err := splitAddr(cl.Advertise); err != nil {
			ps.Add("cluster.advertise", "want host:port the other nodes reach this node at: %v", err)
		}
	}
	seen := map[string]bool{}
	for i, r := range cl.Routes {
		path := fmt.Sprintf("cluster.routes[%d]", i)
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Hostname() == "" || u.Port() == "" {
			ps.Add(path, "want nats://host:port of a node's cluster.listen, got %q", r)
			continue
		}
		if p, err := strconv.Atoi(u.Port()); err != nil || p < 1 || p > 65535 {
			ps.Add(path, "port %q is not a number 1..65535", u.Port())
		}
		if seen[u.Host] {
			ps.Add(path, "%s is listed twice", u.Host)
		}
		seen[u.Host] = true
	}
	c.validateRouteSecurity(ps)
	if !cl.Enabled {
		return
	}
	if c.NATS.URL != "" {
		ps.Add("nats.url", "a cluster node embeds its own NATS server: remove nats.url (or --nats-url), or run serve without --cluster")
	}
	if len(cl.Routes) == 0 {
		ps.Add("cluster.routes", "serve --cluster needs the nats://host:port route of every node (e.g. three for replicas: 3)")
	} else if n := cl.Nodes(); cl.Replicas > n {
		ps.Add("cluster.replicas", "%d replicas need at least %d nodes; the routes name %d", cl.Replicas, cl.Replicas, n)
	}
	if c.Lake.Warehouse == "" {
		ps.Add("lake.warehouse", "every node of a cluster must write the same lake: set s3://bucket/prefix (or a file:// directory every node mounts)")
	}
	if cat := c.Lake.Catalog; cat.Type != "rest" && cat.Driver != "postgres" && cat.URI == "" {
		ps.Add("lake.catalog", "every node of a cluster must use the same catalog, not one SQLite file per data directory: use a PostgreSQL catalog (type: sql, driver: postgres, dsn: ...), a REST catalog, or a uri every node shares")
	}
}
