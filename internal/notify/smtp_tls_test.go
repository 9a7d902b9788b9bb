package notify

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// tlsMailbox is an SMTP backend that requires AUTH PLAIN before MAIL and records, for each
// message, whether it came over TLS and as which user.
type tlsMailbox struct {
	user, password string

	mu    sync.Mutex
	mails []tlsMail
	auths []string // every AUTH PLAIN attempt as "user:password"
}

type tlsMail struct {
	tls     bool
	version uint16
	user    string
	to      []string
	data    string
}

func (m *tlsMailbox) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &tlsSession{m: m, conn: c}, nil
}

func (m *tlsMailbox) received() ([]tlsMail, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]tlsMail(nil), m.mails...), append([]string(nil), m.auths...)
}

type tlsSession struct {
	m    *tlsMailbox
	conn *smtp.Conn
	user string
	to   []string
}

var _ smtp.AuthSession = (*tlsSession)(nil)

func (s *tlsSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *tlsSession) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, password string) error {
		s.m.mu.Lock()
		s.m.auths = append(s.m.auths, user+":"+password)
		s.m.mu.Unlock()
		if user != s.m.user || password != s.m.password {
			return errors.New("invalid credentials")
		}
		s.user = user
		return nil
	}), nil
}

func (s *tlsSession) Mail(string, *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *tlsSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *tlsSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	st, isTLS := s.conn.TLSConnectionState()
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, tlsMail{tls: isTLS && st.HandshakeComplete, version: st.Version, user: s.user, to: s.to, data: string(b)})
	s.m.mu.Unlock()
	return nil
}

func (s *tlsSession) Reset()        { s.to = nil }
func (s *tlsSession) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 signed by its own ECDSA key.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pulselake test SMTP"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startTLSMailbox runs a go-smtp server on 127.0.0.1 that allows AUTH only over TLS. With
// cert nil it offers no STARTTLS; with implicit it speaks TLS from the first byte.
func startTLSMailbox(t *testing.T, cert *tls.Certificate, implicit bool) (*tlsMailbox, string) {
	t.Helper()
	mb := &tlsMailbox{user: "ward-7", password: "s3cret pass"}
	s := smtp.NewServer(mb)
	s.Domain = "localhost"
	s.AllowInsecureAuth = false
	s.ErrorLog = log.New(io.Discard, "", 0)
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	var l net.Listener
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cert != nil {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		if implicit {
			l = tls.NewListener(l, s.TLSConfig)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(l)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	return mb, l.Addr().String()
}

func testEmailData() *Data {
	return &Data{Receiver: "ward-email", Status: "firing", GroupLabels: map[string]string{"alertname": "hypertensive-crisis"},
		CommonLabels: map[string]string{"alertname": "hypertensive-crisis", "subject": "patient-17"},
		Alerts: TemplateAlerts{{Status: "firing", Labels: map[string]string{"alertname": "hypertensive-crisis", "subject": "patient-17"},
			Values: map[string]float64{"systolic": 185, "diastolic": 95}, StartsAt: time.Now()}}}
}

func newTestEmail(t *testing.T, addr, mode, password string, skipVerify bool) *emailSender {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := newEmail(&EmailConfig{To: []string{"Ward 7 <nurse@example.org>"}, From: "pulselake@example.org", SMTP: addr,
		TLS: mode, InsecureSkipVerify: skipVerify, Username: "ward-7", PasswordFile: pwFile})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The email channel has no option for a private CA, so the successful sends trust the test
// certificate through insecure_skip_verify; the default (verification on) is checked to fail.
func TestEmailTLSAndAuthPlain(t *testing.T) {
	cert := selfSigned(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, mode := range []string{"starttls", "starttls-required", "tls"} {
		t.Run(mode, func(t *testing.T) {
			mb, addr := startTLSMailbox(t, &cert, mode == "tls")
			if err := newTestEmail(t, addr, mode, "s3cret pass", true).send(ctx, testEmailData(), nil); err != nil {
				t.Fatalf("send: %v", err)
			}
			mails, auths := mb.received()
			if len(mails) != 1 {
				t.Fatalf("got %d mails, want 1", len(mails))
			}
			m := mails[0]
			if !m.tls || m.version < tls.VersionTLS12 {
				t.Errorf("mail arrived without TLS (tls %v, version %x)", m.tls, m.version)
			}
			if m.user != "ward-7" || len(auths) != 1 || auths[0] != "ward-7:s3cret pass" {
				t.Errorf("auth: user %q, attempts %q; want ward-7 with the password file's password", m.user, auths)
			}
			if len(m.to) != 1 || m.to[0] != "nurse@example.org" {
				t.Errorf("recipients %q", m.to)
			}
			if !strings.Contains(m.data, "systolic=185") || !strings.Contains(m.data, "patient-17") {
				t.Errorf("mail lacks the reading:\n%s", m.data)
			}
		})
	}

	t.Run("wrong password", func(t *testing.T) {
		mb, addr := startTLSMailbox(t, &cert, false)
		err := newTestEmail(t, addr, "starttls", "guess", true).send(ctx, testEmailData(), nil)
		if err == nil || !strings.Contains(err.Error(), "authenticating to "+addr+" as ward-7") {
			t.Fatalf("send with a wrong password: %v", err)
		}
		if mails, _ := mb.received(); len(mails) != 0 {
			t.Errorf("%d mails accepted without valid auth", len(mails))
		}
	})

	t.Run("certificate verified by default", func(t *testing.T) {
		mb, addr := startTLSMailbox(t, &cert, false)
		err := newTestEmail(t, addr, "starttls-required", "s3cret pass", false).send(ctx, testEmailData(), nil)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) || !strings.Contains(err.Error(), "starting TLS with "+addr) {
			t.Fatalf("send to an untrusted certificate: %v", err)
		}
		if mails, auths := mb.received(); len(mails) != 0 || len(auths) != 0 {
			t.Errorf("untrusted server got %d mails and %d auth attempts", len(mails), len(auths))
		}
	})

	t.Run("starttls-required without TLS", func(t *testing.T) {
		mb, addr := startTLSMailbox(t, nil, false)
		err := newTestEmail(t, addr, "starttls-required", "s3cret pass", true).send(ctx, testEmailData(), nil)
		var perm permanentError
		if !errors.As(err, &perm) || err.Error() != "SMTP server "+addr+" does not offer STARTTLS (email.tls is starttls-required)" {
			t.Fatalf("send: %v; want the permanent STARTTLS error", err)
		}
		if mails, auths := mb.received(); len(mails) != 0 || len(auths) != 0 {
			t.Errorf("server without TLS got %d mails and %d auth attempts", len(mails), len(auths))
		}
	})
}
