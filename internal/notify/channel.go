package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"strings"
	"text/template"
	"time"
)

// sender delivers one notification. Errors wrapped in permanentError are not retried.
type sender interface {
	send(ctx context.Context, d *Data, alerts []Alert) error
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func newSender(ch Channel, client *http.Client, log *slog.Logger) (sender, error) {
	switch {
	case ch.Email != nil:
		return newEmail(ch.Email)
	case ch.Webhook != nil:
		return newWebhook(ch.Webhook, client)
	case ch.Alertmanager != nil:
		return &amSender{url: strings.TrimRight(ch.Alertmanager.URL, "/") + "/api/v2/alerts", client: client, timeout: orDefault(ch.Alertmanager.Timeout.D(), 10*time.Second)}, nil
	case ch.Log != nil:
		lvl := slog.LevelInfo
		if ch.Log.Level == "warn" {
			lvl = slog.LevelWarn
		}
		return &logSender{log: log, level: lvl}, nil
	}
	return nil, fmt.Errorf("channel %s: no delivery method", ch.Name)
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// email

type emailSender struct {
	cfg           *EmailConfig
	password      string
	subject, body *template.Template
}

func newEmail(c *EmailConfig) (*emailSender, error) {
	pw, err := readSecret(c.PasswordFile)
	if err != nil {
		return nil, fmt.Errorf("email password_file: %w", err)
	}
	s := &emailSender{cfg: c, password: pw}
	if s.subject, err = parseTemplate("subject", c.Subject, defaultSubject); err != nil {
		return nil, err
	}
	if s.body, err = parseTemplate("body", c.Body, defaultBody); err != nil {
		return nil, err
	}
	return s, nil
}

// send renders the notification as one plain-text message and hands it to the SMTP
// server for every recipient.
func (s *emailSender) send(ctx context.Context, d *Data, _ []Alert) error {
	from, msg, err := s.message(d)
	if err != nil {
		return err
	}
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := s.transmit(c, from, msg); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}

// message renders d into the sender address and the message with its headers, lines
// ended by CRLF. A template that fails is a permanent error.
func (s *emailSender) message(d *Data) (from string, msg []byte, err error) {
	subject, err := execute(s.subject, d)
	if err != nil {
		return "", nil, permanentError{err}
	}
	body, err := execute(s.body, d)
	if err != nil {
		return "", nil, permanentError{err}
	}
	from = s.cfg.From
	if from == "" {
		h, _ := os.Hostname()
		if h == "" {
			h = "localhost"
		}
		from = "pulselake@" + h
	}
	var b bytes.Buffer
	var id [12]byte
	_, _ = rand.Read(id[:])
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@pulselake>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
		from, strings.Join(s.cfg.To, ", "), mime.QEncoding.Encode("utf-8", strings.ReplaceAll(subject, "\n", " ")),
		time.Now().UTC().Format(time.RFC1123Z), hex.EncodeToString(id[:]))
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
	return from, b.Bytes(), nil
}

// connect opens a session with the SMTP server, ready to send: greeted, on TLS as
// email.tls asks, and authenticated when a username is set.
func (s *emailSender) connect(ctx context.Context) (*smtp.Client, error) {
	host, _, _ := net.SplitHostPort(s.cfg.SMTP)
	tlsCfg := &tls.Config{ServerName: host, InsecureSkipVerify: s.cfg.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	c, err := s.dial(ctx, host, tlsCfg)
	if err != nil {
		return nil, err
	}
	if err := s.greet(c, host, tlsCfg); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dial connects to the SMTP server (over TLS when email.tls is tls) with a deadline for
// the whole session, and reads its greeting.
func (s *emailSender) dial(ctx context.Context, host string, tlsCfg *tls.Config) (*smtp.Client, error) {
	dl := net.Dialer{Timeout: 10 * time.Second}
	var conn net.Conn
	var err error
	if s.cfg.TLS == "tls" {
		conn, err = (&tls.Dialer{NetDialer: &dl, Config: tlsCfg}).DialContext(ctx, "tcp", s.cfg.SMTP)
	} else {
		conn, err = dl.DialContext(ctx, "tcp", s.cfg.SMTP)
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to SMTP server %s: %w", s.cfg.SMTP, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting SMTP server %s: %w", s.cfg.SMTP, err)
	}
	return c, nil
}

// greet sends EHLO, starts TLS when the server offers it (unless email.tls is tls or
// none; starttls-required fails permanently without it), and authenticates.
func (s *emailSender) greet(c *smtp.Client, host string, tlsCfg *tls.Config) error {
	hello := s.cfg.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return fmt.Errorf("sending EHLO to %s: %w", s.cfg.SMTP, err)
	}
	if s.cfg.TLS != "tls" && s.cfg.TLS != "none" {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsCfg); err != nil {
				return fmt.Errorf("starting TLS with %s: %w", s.cfg.SMTP, err)
			}
		} else if s.cfg.TLS == "starttls-required" {
			return permanentError{fmt.Errorf("SMTP server %s does not offer STARTTLS (email.tls is starttls-required)", s.cfg.SMTP)}
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.password, host)); err != nil {
			return fmt.Errorf("authenticating to %s as %s: %w", s.cfg.SMTP, s.cfg.Username, err)
		}
	}
	return nil
}

// transmit sends msg from from to every recipient over the session c.
func (s *emailSender) transmit(c *smtp.Client, from string, msg []byte) error {
	if err := c.Mail(addrOnly(from)); err != nil {
		return fmt.Errorf("sending MAIL FROM to %s: %w", s.cfg.SMTP, err)
	}
	for _, to := range s.cfg.To {
		if err := c.Rcpt(addrOnly(to)); err != nil {
			return fmt.Errorf("sending RCPT TO %s: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("sending DATA to %s: %w", s.cfg.SMTP, err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("writing message to %s: %w", s.cfg.SMTP, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("finishing message to %s: %w", s.cfg.SMTP, err)
	}
	return nil
}

func addrOnly(a string) string {
	if i := strings.LastIndexByte(a, '<'); i >= 0 {
		if j := strings.IndexByte(a[i:], '>'); j > 0 {
			return a[i+1 : i+j]
		}
	}
	return strings.TrimSpace(a)
}

// webhook

type webhookSender struct {
	cfg     *WebhookConfig
	client  *http.Client
	token   string
	text    *template.Template
	timeout time.Duration
}

func newWebhook(c *WebhookConfig, client *http.Client) (*webhookSender, error) {
	tok, err := readSecret(c.BearerTokenFile)
	if err != nil {
		return nil, fmt.Errorf("webhook bearer_token_file: %w", err)
	}
	t, err := parseTemplate("text", c.Text, defaultText)
	if err != nil {
		return nil, err
	}
	return &webhookSender{cfg: c, client: client, token: tok, text: t, timeout: orDefault(c.Timeout.D(), 10*time.Second)}, nil
}

// WebhookMessage is the JSON body of a webhook notification: Alertmanager's webhook format
// (version 4) plus the reading values of each alert.
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a WebhookMessage.
type WebhookAlert struct {
	Status       string             `json:"status"`
	Labels       map[string]string  `json:"labels"`
	Annotations  map[string]string  `json:"annotations"`
	Values       map[string]float64 `json:"values,omitempty"`
	StartsAt     time.Time          `json:"startsAt"`
	EndsAt       time.Time          `json:"endsAt"`
	GeneratorURL string             `json:"generatorURL"`
	Fingerprint  string             `json:"fingerprint"`
}

func (s *webhookSender) send(ctx context.Context, d *Data, _ []Alert) error {
	var body []byte
	var err error
	if s.cfg.Format == "slack" {
		text, terr := execute(s.text, d)
		if terr != nil {
			return permanentError{terr}
		}
		body, err = json.Marshal(map[string]string{"text": text})
	} else {
		m := WebhookMessage{Version: "4", GroupKey: d.GroupKey, Status: d.Status, Receiver: d.Receiver, GroupLabels: d.GroupLabels,
			CommonLabels: d.CommonLabels, CommonAnnotations: d.CommonAnnotations, ExternalURL: d.ExternalURL}
		for _, a := range d.Alerts {
			m.Alerts = append(m.Alerts, WebhookAlert{Status: a.Status, Labels: a.Labels, Annotations: a.Annotations, Values: a.Values,
				StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Fingerprint: a.Fingerprint})
		}
		body, err = json.Marshal(m)
	}
	if err != nil {
		return permanentError{fmt.Errorf("encoding webhook body: %w", err)}
	}
	return postJSON(ctx, s.client, s.cfg.URL, s.token, body, s.timeout)
}

func postJSON(ctx context.Context, client *http.Client, url, token string, body []byte, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanentError{fmt.Errorf("building request to %s: %w", redactURL(url), err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulselake")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("posting to %s: %w", redactURL(url), errors.Unwrap(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode/100 == 2:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("posting to %s: status %s", redactURL(url), resp.Status)
	default:
		return permanentError{fmt.Errorf("posting to %s: status %s", redactURL(url), resp.Status)}
	}
}

// redactURL drops user info and the query (Slack webhook URLs carry their secret in the
// path, so everything after the host is dropped too).
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			rest = rest[:j]
		}
		if j := strings.LastIndexByte(rest, '@'); j >= 0 {
			rest = rest[j+1:]
		}
		return u[:i+3] + rest + "/…"
	}
	return "(url)"
}

// alertmanager

type amSender struct {
	url     string
	client  *http.Client
	timeout time.Duration
}

type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

func (s *amSender) send(ctx context.Context, _ *Data, alerts []Alert) error {
	out := make([]amAlert, len(alerts))
	for i, a := range alerts {
		out[i] = amAlert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return permanentError{err}
	}
	return postJSON(ctx, s.client, s.url, "", body, s.timeout)
}

// log

type logSender struct {
	log   *slog.Logger
	level slog.Level
}

func (s *logSender) send(ctx context.Context, d *Data, _ []Alert) error {
	for _, a := range d.Alerts {
		s.log.Log(ctx, s.level, "alert notification", "receiver", d.Receiver, "status", a.Status,
			"alertname", a.Labels["alertname"], "subject", a.Labels["subject"], "device", a.Labels["device"],
			"severity", a.Labels["severity"], "summary", a.Annotations["summary"], "since", a.StartsAt)
	}
	return nil
}
