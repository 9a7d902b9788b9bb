package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI writes into dir a CA (ca.crt), a node certificate for 127.0.0.1 and node-a.internal
// signed by it (node.crt, node.key), a second node's key (other.key) and a certificate of
// another CA (foreign.crt, foreign.key).
func testPKI(t *testing.T, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	save := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	saveKey := func(name string, k *ecdsa.PrivateKey) {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		save(name, "PRIVATE KEY", der)
	}
	ca := func(name string) (*x509.Certificate, *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k
	}
	leaf := func(name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			DNSNames:    []string{"node-a.internal"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		save(name+".crt", "CERTIFICATE", der)
		saveKey(name+".key", k)
	}
	caCert, caKey := ca("ca")
	save("ca.crt", "CERTIFICATE", caCert.Raw)
	leaf("node", caCert, caKey)
	saveKey("other.key", newKey())
	otherCert, otherKey := ca("other-ca")
	leaf("foreign", otherCert, otherKey)
}

// TestClusterRouteSecurity: the route TLS files and secret are checked at their keys, and a
// cluster whose routes would cross the network unprotected is refused unless insecure is set.
func TestClusterRouteSecurity(t *testing.T) {
	const lan = "cluster:\n  listen: 0.0.0.0:6222\n  advertise: node-a.internal:6222\n  routes: [nats://node-a.internal:6222, nats://node-b.internal:6222, nats://node-c.internal:6222]\n"
	const tlsOK = "  tls: {cert: node.crt, key: node.key, ca: ca.crt}\n"
	for _, tc := range []struct {
		name    string
		yaml    string
		files   map[string]string // more files beside the configuration
		enabled bool
		want    map[string]int // problem path → line (0: any line)
	}{
		{name: "reachable routes without TLS or secret", enabled: true, yaml: lan + clusterLake,
			want: map[string]int{"cluster.listen": 2}},
		{name: "check config finds it too when routes are listed", yaml: lan,
			want: map[string]int{"cluster.listen": 2}},
		{name: "a single node's file without routes is not a cluster", yaml: "http:\n  listen: 127.0.0.1:8080\n"},
		{name: "loopback listener, a route to another machine", enabled: true,
			yaml: "cluster:\n  listen: 127.0.0.1:6222\n  routes: [nats://127.0.0.1:6222, nats://10.0.0.2:6222]\n  replicas: 2\n" + clusterLake,
			want: map[string]int{"cluster.routes": 3}},
		{name: "all on loopback", enabled: true,
			yaml: "cluster:\n  listen: 127.0.0.1:6222\n  routes: [nats://127.0.0.1:6222, nats://localhost:6223, \"nats://[::1]:6224\"]\n" + clusterLake},
		{name: "insecure on purpose", enabled: true, yaml: lan + "  insecure: true\n" + clusterLake},
		{name: "secret", enabled: true, yaml: lan + "  secret: 0123456789abcdef\n" + clusterLake},
		{name: "secret too short", enabled: true, yaml: lan + "  secret: hunter2\n" + clusterLake,
			want: map[string]int{"cluster.secret": 5}},
		{name: "secret file", enabled: true, yaml: lan + "  secret_file: cluster.secret\n" + clusterLake,
			files: map[string]string{"cluster.secret": "0123456789abcdef0123\n"}},
		{name: "secret file empty", enabled: true, yaml: lan + "  secret_file: cluster.secret\n" + clusterLake,
			files: map[string]string{"cluster.secret": "\n"}, want: map[string]int{"cluster.secret_file": 5}},
		{name: "secret file missing", enabled: true, yaml: lan + "  secret_file: nowhere.secret\n" + clusterLake,
			want: map[string]int{"cluster.secret_file": 5}},
		{name: "secret and secret file", enabled: true, yaml: lan + "  secret: 0123456789abcdef\n  secret_file: cluster.secret\n" + clusterLake,
			files: map[string]string{"cluster.secret": "0123456789abcdef\n"}, want: map[string]int{"cluster.secret_file": 6}},
		{name: "TLS", enabled: true, yaml: lan + tlsOK + "  secret_file: cluster.secret\n" + clusterLake,
			files: map[string]string{"cluster.secret": "0123456789abcdef\n"}},
		{name: "TLS alone", enabled: true, yaml: lan + tlsOK + clusterLake},
		{name: "TLS without key and CA", enabled: true, yaml: lan + "  tls:\n    cert: node.crt\n" + clusterLake,
			want: map[string]int{"cluster.tls.key": 0, "cluster.tls.ca": 0}},
		{name: "key of another certificate", enabled: true, yaml: lan + "  tls:\n    cert: node.crt\n    key: other.key\n    ca: ca.crt\n" + clusterLake,
			want: map[string]int{"cluster.tls.key": 7}},
		{name: "certificate of another CA", enabled: true, yaml: lan + "  tls:\n    cert: foreign.crt\n    key: foreign.key\n    ca: ca.crt\n" + clusterLake,
			want: map[string]int{"cluster.tls.cert": 6}},
		{name: "CA file missing", enabled: true, yaml: lan + "  tls:\n    cert: node.crt\n    key: node.key\n    ca: nowhere.crt\n" + clusterLake,
			want: map[string]int{"cluster.tls.ca": 8}},
		{name: "certificate does not name the advertised host", enabled: true,
			yaml: strings.ReplaceAll(lan, "node-a.internal", "node-z.internal") + tlsOK + clusterLake,
			want: map[string]int{"cluster.tls.cert": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := write(t, tc.yaml)
			testPKI(t, filepath.Dir(name))
			for f, body := range tc.files {
				if err := os.WriteFile(filepath.Join(filepath.Dir(name), f), []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(name)
			if err != nil {
				t.Fatal(err)
			}
			c.Cluster.Enabled = tc.enabled
			err = c.Validate()
			wantProblemsAt(t, err, tc.want)
		})
	}
}

// TestClusterSecurityValues: what serve is given, read from files relative to the
// configuration's directory.
func TestClusterSecurityValues(t *testing.T) {
	name := write(t, "cluster:\n  listen: 127.0.0.1:6222\n  secret_file: s/cluster.secret\n  tls: {cert: node.crt, key: node.key, ca: ca.crt}\n")
	dir := filepath.Dir(name)
	testPKI(t, dir)
	os.Mkdir(filepath.Join(dir, "s"), 0o700)
	if err := os.WriteFile(filepath.Join(dir, "s", "cluster.secret"), []byte("  the-cluster-secret-42  \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir()) // relative to the file, not to the working directory
	c, err := Load(name)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := c.ClusterSecret(); err != nil || s != "the-cluster-secret-42" {
		t.Errorf("secret %q, %v; want the first line, trimmed", s, err)
	}
	tc, err := c.ClusterTLS()
	if err != nil || tc == nil || len(tc.Certificates) != 1 || tc.ClientCAs == nil || tc.MinVersion < 0x0303 {
		t.Errorf("TLS config %+v, %v", tc, err)
	}
	none, _ := Load(write(t, "cluster:\n  secret: inline-secret-0123456789\n"))
	if s, _ := none.ClusterSecret(); s != "inline-secret-0123456789" {
		t.Errorf("inline secret %q", s)
	}
	if tc, err := none.ClusterTLS(); tc != nil || err != nil {
		t.Errorf("TLS without cluster.tls: %v, %v", tc, err)
	}
}
