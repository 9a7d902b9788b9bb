package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeClusterPKI writes into dir a CA certificate (ca.crt) and, for each name, a route
// certificate for 127.0.0.1 signed by it (name.crt, name.key), as docs/scale-out.md makes
// them with openssl.
func writeClusterPKI(t *testing.T, dir string, names ...string) {
	t.Helper()
	save := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pulselake-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	save("ca.crt", "CERTIFICATE", caDER)
	for i, name := range names {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		save(name+".crt", "CERTIFICATE", der)
		save(name+".key", "PRIVATE KEY", kder)
	}
}

// TestClusterRoutesTLS runs three `serve --cluster` processes whose routes use mutual TLS and
// a secret kept in a file, with the lake in a directory and SQLite catalog they share: a
// reading stored through one node is queryable on another, and every node logs how its
// routes are secured. A node configured to listen for routes on every interface with neither
// TLS nor secret refuses to start and says how to fix it.
func TestClusterRoutesTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("three serve processes (-short)")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	names := []string{"node-a", "node-b", "node-c"}
	writeClusterPKI(t, dir, names...)
	const secret = "e2e-cluster-secret-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(dir, "cluster.secret"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lakeDir := filepath.Join(dir, "lake")
	routePorts := make([]string, 3)
	var routes []string
	for i := range routePorts {
		routePorts[i] = freeAddr(t)
		routes = append(routes, "nats://"+routePorts[i])
	}
	nodes := make([]*clusterNode, 3)
	for i, name := range names {
		n := &clusterNode{name: name, dir: t.TempDir(), http: freeAddr(t), mqtt: "off", logPath: filepath.Join(dir, name+".log")}
		n.conf = filepath.Join(dir, name+".yaml") // beside its files: relative paths are relative to it
		conf := fmt.Sprintf(`mqtt: {listen: "off"}
cluster:
  name: e2e-tls
  node_name: %s
  listen: %s
  routes: [%s]
  tls: {cert: %s.crt, key: %s.key, ca: ca.crt}
  secret_file: cluster.secret
  lease_ttl: 10s
lake:
  warehouse: file://%s
  flush_interval: 1s
  catalog: {type: sql, uri: %s}
`, name, routePorts[i], strings.Join(routes, ", "), name, name, lakeDir, filepath.Join(lakeDir, "catalog.db"))
		if err := os.WriteFile(n.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	stopNodesAtCleanup(t, nodes)
	for _, n := range nodes {
		n.start(t, bin)
	}
	for _, n := range nodes {
		n.waitReady(t)
	}

	at := time.Now().Add(-time.Minute)
	if code, body := postNDJSON(t, "http://"+nodes[0].http, adminToken, [][]byte{heartRate("tls-dev-1", at, 61), heartRate("tls-dev-2", at, 62)}); code != http.StatusAccepted {
		t.Fatalf("POST to %s: %d %v", nodes[0].name, code, body)
	}
	waitUntil(t, time.Minute, "the readings stored through node-a are queryable on node-c", func() bool {
		rows, ok := nodeQuery(nodes[2].http, "SELECT count(*) FROM trusted.heart_rate WHERE device LIKE 'tls-dev-%'")
		return ok && len(rows) == 1 && fmt.Sprint(rows[0][0]) == "2"
	})
	for _, n := range nodes {
		l := tail(n.logPath)
		if !strings.Contains(l, `route_security="mutual TLS and secret"`) {
			t.Errorf("%s does not log that its routes use mutual TLS and the secret", n.name)
		}
		if strings.Contains(l, secret) {
			t.Errorf("%s logs the cluster secret", n.name)
		}
	}

	// Routes on every interface with neither TLS nor secret: refused, with the fix.
	open := filepath.Join(dir, "open.yaml")
	conf := fmt.Sprintf("cluster:\n  listen: 0.0.0.0:%s\n  routes: [%s]\nlake:\n  warehouse: file://%s\n  catalog: {type: sql, uri: %s}\n",
		strings.Split(freeAddr(t), ":")[1], strings.Join(routes, ", "), lakeDir, filepath.Join(lakeDir, "catalog.db"))
	if err := os.WriteFile(open, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--cluster", "--data", t.TempDir(), "--config", open, "--http", freeAddr(t), "--mqtt", "off")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("serve with an open route port: %v (want exit 2)\n%s", err, out)
	}
	for _, want := range []string{"cluster.listen", "cluster.tls", "cluster.secret_file", "cluster.insecure: true"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not mention %s:\n%s", want, out)
		}
	}
}
