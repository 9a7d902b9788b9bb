package stream

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// RouteUser is the user name every node presents, with the cluster's secret as its
// password, when it connects a route to another node.
const RouteUser = "pulselake-route"

// routeTLSTimeout bounds a route's TLS handshake; a loaded node needs more than NATS's 2 s.
const routeTLSTimeout = 5 * time.Second

// RouteTLSError is a problem with one of the route TLS files: Key names it ("cert", "key" or
// "ca", the keys of cluster.tls).
type RouteTLSError struct {
	Key string
	Err error
}

func (e *RouteTLSError) Error() string { return "cluster.tls." + e.Key + ": " + e.Err.Error() }
func (e *RouteTLSError) Unwrap() error { return e.Err }

// RouteTLS reads a node's route certificate, its private key and the certificate of the CA
// that signs every node's certificate, checks that they fit together, and returns the TLS
// configuration of mutual TLS on routes: each side presents its certificate and verifies the
// other's against the CA (the dialling side also checks that the certificate names the host
// it dialled, as any TLS client does); TLS 1.2 or later. A problem is a *RouteTLSError
// saying what is wrong and how to fix it.
func RouteTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	pool, err := readCA(caFile)
	if err != nil {
		return nil, &RouteTLSError{"ca", err}
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &RouteTLSError{"cert", err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &RouteTLSError{"key", err}
	}
	if b, _ := pem.Decode(certPEM); b == nil || b.Type != "CERTIFICATE" {
		return nil, &RouteTLSError{"cert", fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", certFile)}
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type == "CERTIFICATE" {
		return nil, &RouteTLSError{"key", fmt.Errorf("%s holds no PEM private key (-----BEGIN PRIVATE KEY-----)", keyFile)}
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil && strings.Contains(err.Error(), "does not match") {
		return nil, &RouteTLSError{"key", fmt.Errorf("%s is not the private key of %s: give the key the certificate was made for", keyFile, certFile)}
	} else if err != nil {
		return nil, &RouteTLSError{"key", fmt.Errorf("reading the key pair %s, %s: %v (want an unencrypted PEM key: PKCS#8, PKCS#1 or EC)", certFile, keyFile, err)}
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, &RouteTLSError{"cert", fmt.Errorf("%s: %v", certFile, err)}
	}
	pair.Leaf = leaf
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// The certificate serves both ends of a route: the node accepting it (server) and the
	// node dialling it (client).
	for _, use := range []struct {
		name string
		eku  x509.ExtKeyUsage
	}{{"serverAuth", x509.ExtKeyUsageServerAuth}, {"clientAuth", x509.ExtKeyUsageClientAuth}} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{use.eku}})
		var unknown x509.UnknownAuthorityError
		var invalid x509.CertificateInvalidError
		switch {
		case err == nil:
			continue
		case errors.As(err, &unknown):
			return nil, &RouteTLSError{"cert", fmt.Errorf("%s (subject %q, issuer %q) is not signed by the CA of %s: sign every node's certificate with that CA (docs/scale-out.md, Security)", certFile, leaf.Subject, leaf.Issuer, caFile)}
		case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
			return nil, &RouteTLSError{"cert", fmt.Errorf("%s is not valid for %s: a route certificate needs extendedKeyUsage serverAuth and clientAuth (or none), since every node both accepts and dials routes", certFile, use.name)}
		case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
			return nil, &RouteTLSError{"cert", fmt.Errorf("%s is valid only from %s to %s: make a new one", certFile, leaf.NotBefore.Format(time.RFC3339), leaf.NotAfter.Format(time.RFC3339))}
		default:
			return nil, &RouteTLSError{"cert", fmt.Errorf("%s does not verify against %s: %v", certFile, caFile, err)}
		}
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		RootCAs:      pool,
	}, nil
}

// readCA reads the PEM certificates of a CA file into a pool.
func readCA(name string) (*x509.CertPool, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("%s holds a certificate that is not a CA (subject %q): give the certificate of the CA that signs the nodes' certificates", name, c.Subject)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate (-----BEGIN CERTIFICATE-----)", name)
	}
	return pool, nil
}

// routeAuth admits a route that presents RouteUser and the cluster's secret.
type routeAuth struct{ sum [sha256.Size]byte }

func (a routeAuth) Check(c server.ClientAuthentication) bool {
	o := c.GetOpts()
	got := sha256.Sum256([]byte(o.Password)) // the same length whatever was sent
	return o.Username == RouteUser && subtle.ConstantTimeCompare(got[:], a.sum[:]) == 1
}

// withSecret returns the route URLs with RouteUser and secret as their user information,
// which the server presents when it connects them.
func withSecret(routes []*url.URL, secret string) []*url.URL {
	out := make([]*url.URL, len(routes))
	for i, r := range routes {
		u := *r
		u.User = url.UserPassword(RouteUser, secret)
		out[i] = &u
	}
	return out
}
