package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/pulselake/pulselake/internal/logbuf"
	"github.com/pulselake/pulselake/internal/reading"
)

// testCA is a certificate authority made for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, file: filepath.Join(t.TempDir(), name+".crt")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue makes a node certificate for 127.0.0.1 signed by the CA and returns the files of the
// certificate and its key. tweak, when set, changes the template first.
func (ca *testCA) issue(t *testing.T, name string, tweak func(*x509.Certificate)) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if tweak != nil {
		tweak(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// routeTLS is RouteTLS for a fresh certificate of ca.
func (ca *testCA) routeTLS(t *testing.T, name string) *tls.Config {
	t.Helper()
	cert, key := ca.issue(t, name, nil)
	c, err := RouteTLS(cert, key, ca.file)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func writePEM(t *testing.T, name, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRouteTLSChecks: each mistake in the route TLS files is reported at its key, saying what
// is wrong.
func TestRouteTLSChecks(t *testing.T) {
	ca, other := newTestCA(t, "ca"), newTestCA(t, "other-ca")
	cert, key := ca.issue(t, "node", nil)
	_, otherKey := ca.issue(t, "node-2", nil)
	foreign, foreignKey := other.issue(t, "node", nil)
	serverOnly, serverOnlyKey := ca.issue(t, "server-only", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	expired, expiredKey := ca.issue(t, "old", func(c *x509.Certificate) {
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})
	missing := filepath.Join(t.TempDir(), "missing.pem")
	if _, err := RouteTLS(cert, key, ca.file); err != nil {
		t.Fatalf("good files: %v", err)
	}
	for _, tc := range []struct {
		name, cert, key, ca string
		wantKey, want       string
	}{
		{"missing CA", cert, key, missing, "ca", "no such file"},
		{"missing certificate", missing, key, ca.file, "cert", "no such file"},
		{"missing key", cert, missing, ca.file, "key", "no such file"},
		{"key of another certificate", cert, otherKey, ca.file, "key", "is not the private key of"},
		{"key file given as certificate", key, key, ca.file, "cert", "no PEM certificate"},
		{"certificate given as key", cert, cert, ca.file, "key", "no PEM private key"},
		{"certificate of another CA", foreign, foreignKey, ca.file, "cert", "is not signed by the CA"},
		{"node certificate given as CA", cert, key, cert, "ca", "not a CA"},
		{"server use only", serverOnly, serverOnlyKey, ca.file, "cert", "clientAuth"},
		{"expired", expired, expiredKey, ca.file, "cert", "make a new one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RouteTLS(tc.cert, tc.key, tc.ca)
			var re *RouteTLSError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a RouteTLSError", err)
			}
			if re.Key != tc.wantKey || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q at %s, want %q at %s", err, re.Key, tc.want, tc.wantKey)
			}
		})
	}
}

// startSecuredCluster starts n clustered servers on loopback with route security set by
// secure (given each node's index), logging at debug level into logs; it returns them once
// JetStream has a leader, with their route URLs.
func startSecuredCluster(t *testing.T, n int, logs io.Writer, secure func(i int, c *ClusterOptions)) ([]*Server, []string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ports := make([]int, n)
	routes := make([]string, n)
	for i := range ports {
		p, err := freePort("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		ports[i], routes[i] = p, fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	srvs := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n { // each waits for a majority, so they start together
		c := &ClusterOptions{Name: "test", ServerName: fmt.Sprintf("node-%d", i), Listen: fmt.Sprintf("127.0.0.1:%d", ports[i]),
			Routes: routes, Replicas: n, SyncInterval: time.Second, LeaderTimeout: time.Minute}
		secure(i, c)
		wg.Go(func() { srvs[i], errs[i] = StartServer(log, ServerOptions{Dir: t.TempDir(), Cluster: c}) })
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range srvs {
			if s != nil {
				s.Shutdown(context.Background())
			}
		}
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v\n%s", i, err, logs)
		}
	}
	return srvs, routes
}

// intruder tries to join the cluster at routes as a node secured by secure, and reports
// whether it could: its start fails when no route is accepted (no JetStream leader).
func intruder(t *testing.T, name string, routes []string, logs io.Writer, secure func(*ClusterOptions)) error {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := &ClusterOptions{Name: "test", ServerName: name, Listen: fmt.Sprintf("127.0.0.1:%d", p),
		Routes: routes, Replicas: 1, SyncInterval: time.Second, LeaderTimeout: 4 * time.Second}
	secure(c)
	s, err := StartServer(log, ServerOptions{Dir: t.TempDir(), Cluster: c})
	if err == nil {
		s.Shutdown(context.Background())
	}
	return err
}

// routedTo reports whether any of srvs has a route to the server named name.
func routedTo(t *testing.T, srvs []*Server, name string) bool {
	t.Helper()
	for _, s := range srvs {
		rz, err := s.NATS().Routez(&server.RoutezOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rz.Routes {
			if r.RemoteName == name {
				return true
			}
		}
	}
	return false
}

// TestClusterRoutesSecured: three nodes with mutual TLS and a secret form a cluster and
// replicate the ingest stream; a node with a certificate of another CA, one that dials in
// plain text and one with the right certificate but the wrong secret are all refused, and
// neither secret appears in any log.
func TestClusterRoutesSecured(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six NATS servers (-short)")
	}
	const secret = "cluster-secret-0123456789abcdef"
	ca := newTestCA(t, "ca")
	var logs logbuf.Buffer
	srvs, routes := startSecuredCluster(t, 3, &logs, func(i int, c *ClusterOptions) {
		c.TLS, c.Secret = ca.routeTLS(t, fmt.Sprintf("node-%d", i)), secret
	})
	for _, s := range srvs {
		vz, err := s.NATS().Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !vz.Cluster.TLSRequired || !vz.Cluster.TLSVerify {
			t.Errorf("%s: route listener TLS required %v, peers verified %v; want both", s.NATS().Name(), vz.Cluster.TLSRequired, vz.Cluster.TLSVerify)
		}
	}

	// Replicated: a batch stored through node 0 is in node 2's replica of the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := connectTo(t, srvs[0], 3)
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	reg, _ := reading.NewRegistry()
	if _, err := conn.Publish(ctx, testBatch(t, reading.NewParser(reg), 3)); err != nil {
		t.Fatal(err)
	}
	conn2 := connectTo(t, srvs[2], 3)
	for deadline := time.Now().Add(30 * time.Second); ; {
		s, err := conn2.JS.Stream(ctx, IngestStream)
		if err == nil {
			if info, err := s.Info(ctx); err == nil && info.State.Msgs == 1 && info.Cluster != nil && len(info.Cluster.Replicas) == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 2 does not see the batch stored through node 0 (err %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	const wrongSecret = "intruder-secret-fedcba9876543210"
	other := newTestCA(t, "other-ca")
	var ilogs logbuf.Buffer
	for _, tc := range []struct {
		name   string
		secure func(*ClusterOptions)
	}{
		{"another CA", func(c *ClusterOptions) { c.TLS, c.Secret = other.routeTLS(t, "intruder"), secret }},
		{"own certificate of another CA", func(c *ClusterOptions) {
			c.TLS, c.Secret = other.routeTLS(t, "intruder"), secret
			c.TLS.RootCAs = ca.routeTLS(t, "x").RootCAs // it trusts the cluster's nodes; they must not trust it
		}},
		{"plain text", func(c *ClusterOptions) { c.Secret = secret }},
		{"wrong secret", func(c *ClusterOptions) { c.TLS, c.Secret = ca.routeTLS(t, "intruder"), wrongSecret }},
		{"no secret", func(c *ClusterOptions) { c.TLS = ca.routeTLS(t, "intruder") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := "intruder-" + strings.ReplaceAll(tc.name, " ", "-")
			if err := intruder(t, name, routes, &ilogs, tc.secure); err == nil {
				t.Fatal("the intruder joined the cluster")
			} else if !strings.Contains(err.Error(), "no JetStream leader") {
				t.Fatalf("the intruder failed otherwise: %v", err)
			}
			if routedTo(t, srvs, name) {
				t.Error("a node has a route to the intruder")
			}
		})
	}
	t.Cleanup(func() {
		for _, l := range []string{logs.String(), ilogs.String()} {
			if strings.Contains(l, secret) || strings.Contains(l, wrongSecret) {
				t.Errorf("a secret is in the log:\n%s", l)
			}
		}
		if !strings.Contains(logs.String(), "route_security=\"mutual TLS and secret\"") {
			t.Errorf("the log does not say how the routes are secured:\n%s", logs.String())
		}
	})
}

// TestClusterSecretWithoutTLS: two nodes sharing a secret, without TLS, form a cluster; a
// node with another secret is refused.
func TestClusterSecretWithoutTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers (-short)")
	}
	const secret = "cluster-secret-0123456789abcdef"
	var logs logbuf.Buffer
	srvs, routes := startSecuredCluster(t, 2, &logs, func(_ int, c *ClusterOptions) { c.Secret = secret })
	if err := intruder(t, "intruder", routes, io.Discard, func(c *ClusterOptions) { c.Secret = "not-the-cluster-secret-at-all" }); err == nil {
		t.Fatal("a node with another secret joined the cluster")
	}
	if routedTo(t, srvs, "intruder") {
		t.Error("a node has a route to the intruder")
	}
	if !routedTo(t, srvs[:1], "node-1") {
		t.Error("the two nodes have no route to each other")
	}
}
