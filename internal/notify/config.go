package notify

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"text/template"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Config is the notification part of the configuration file: the channels (top-level key
// `notify`), the routing tree (`route`), inhibition rules (`inhibit_rules`) and templates.
type Config struct {
	Channels     []Channel     `yaml:"notify"`
	Route        *Route        `yaml:"route"`
	InhibitRules []InhibitRule `yaml:"inhibit_rules"`
}

// Channel is a named receiver with exactly one delivery method.
type Channel struct {
	Name         string              `yaml:"name"`
	Email        *EmailConfig        `yaml:"email"`
	Webhook      *WebhookConfig      `yaml:"webhook"`
	Alertmanager *AlertmanagerConfig `yaml:"alertmanager"`
	Log          *LogConfig          `yaml:"log"`
	// SendResolved sends a notice when the alerts resolve (default true).
	SendResolved *bool `yaml:"send_resolved"`
}

// EmailConfig sends mail over SMTP.
type EmailConfig struct {
	To   []string `yaml:"to"`
	From string   `yaml:"from"` // default pulselake@<hostname>
	// SMTP is host:port of the mail server.
	SMTP string `yaml:"smtp"`
	// TLS selects transport security: "starttls" (default: use STARTTLS when the server offers
	// it), "starttls-required" (fail without it), "tls" (implicit TLS, port 465), "none".
	TLS                string `yaml:"tls"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// Username and PasswordFile enable AUTH PLAIN (only over TLS, or to localhost).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Subject and Body are text/template templates over Data; defaults describe the group.
	Subject string `yaml:"subject"`
	Body    string `yaml:"body"`
	// Hello is the name sent in EHLO (default localhost).
	Hello string `yaml:"hello"`
}

// WebhookConfig posts JSON to a URL.
type WebhookConfig struct {
	URL string `yaml:"url"`
	// Format is "alertmanager" (default: Alertmanager's webhook JSON) or "slack" ({"text": ...}
	// for Slack and Mattermost incoming webhooks).
	Format string `yaml:"format"`
	// BearerTokenFile, if set, sends Authorization: Bearer <file contents>.
	BearerTokenFile string            `yaml:"bearer_token_file"`
	Timeout         yamlconf.Duration `yaml:"timeout"` // default 10s
	// Text is the template of the Slack message text.
	Text string `yaml:"text"`
}

// AlertmanagerConfig forwards alerts to a Prometheus Alertmanager (POST /api/v2/alerts).
type AlertmanagerConfig struct {
	URL     string            `yaml:"url"` // base URL, e.g. http://alertmanager:9093
	Timeout yamlconf.Duration `yaml:"timeout"`
}

// LogConfig writes notifications to the log.
type LogConfig struct {
	Level string `yaml:"level"` // info (default) or warn
}

// Route is a node of the routing tree (Alertmanager semantics). A child inherits every
// setting it does not set. The root's empty receiver means every channel.
type Route struct {
	Receiver       string             `yaml:"receiver"`
	Matchers       []string           `yaml:"matchers"`
	GroupBy        []string           `yaml:"group_by"`
	GroupWait      *yamlconf.Duration `yaml:"group_wait"`
	GroupInterval  *yamlconf.Duration `yaml:"group_interval"`
	RepeatInterval *yamlconf.Duration `yaml:"repeat_interval"`
	Continue       bool               `yaml:"continue"`
	Routes         []*Route           `yaml:"routes"`
}

// Defaults of the root route. group_wait is short: a nurse must learn of a crisis within
// seconds; Alertmanager's 30 s suits infrastructure, not patients.
const (
	DefaultGroupWait      = 1 * time.Second
	DefaultGroupInterval  = 1 * time.Minute
	DefaultRepeatInterval = 4 * time.Hour
)

// DefaultGroupBy groups per patient.
var defaultGroupBy = []string{"alertname", "subject"}

// InhibitRule mutes alerts matching Target while an alert matching Source fires with the
// same values of the Equal labels.
type InhibitRule struct {
	SourceMatchers []string `yaml:"source_matchers"`
	TargetMatchers []string `yaml:"target_matchers"`
	Equal          []string `yaml:"equal"`
}

// Validate returns every problem, each at its YAML path ("notify[0].email.smtp"), or nil.
func (c *Config) Validate() yamlconf.Problems {
	var errs yamlconf.Problems
	names := map[string]bool{}
	for i, ch := range c.Channels {
		p := fmt.Sprintf("notify[%d]", i)
		if ch.Name == "" {
			errs.Add(p+".name", "required")
		} else if names[ch.Name] {
			errs.Add(p+".name", "channel %q is defined twice", ch.Name)
		}
		names[ch.Name] = true
		ch.validate(&errs, p)
	}
	if c.Route != nil {
		c.validateRoute(&errs, "route", c.Route, names, true)
	}
	for i, r := range c.InhibitRules {
		r.validate(&errs, fmt.Sprintf("inhibit_rules[%d]", i))
	}
	return errs
}

// validate adds the problems of a channel at YAML path p other than its name: it must
// have exactly one kind, set up correctly.
func (ch *Channel) validate(errs *yamlconf.Problems, p string) {
	n := 0
	if ch.Email != nil {
		n++
		ch.Email.validate(errs, p+".email")
	}
	if ch.Webhook != nil {
		n++
		ch.Webhook.validate(errs, p+".webhook")
	}
	if ch.Alertmanager != nil {
		n++
		checkURL(errs, p+".alertmanager.url", ch.Alertmanager.URL)
	}
	if ch.Log != nil {
		n++
		if l := ch.Log.Level; l != "" && l != "info" && l != "warn" {
			errs.Add(p+".log.level", "want info or warn, got %q", l)
		}
	}
	if n != 1 {
		errs.Add(p, "want exactly one of email, webhook, alertmanager or log, got %d", n)
	}
}

// validate adds the problems of an email channel at YAML path p.
func (e *EmailConfig) validate(errs *yamlconf.Problems, p string) {
	if len(e.To) == 0 {
		errs.Add(p+".to", "at least one address required")
	}
	for j, to := range e.To {
		if !strings.Contains(to, "@") {
			errs.Add(fmt.Sprintf("%s.to[%d]", p, j), "want an email address, got %q", to)
		}
	}
	if _, _, err := net.SplitHostPort(e.SMTP); err != nil {
		errs.Add(p+".smtp", "want host:port of the SMTP server, got %q", e.SMTP)
	}
	switch e.TLS {
	case "", "starttls", "starttls-required", "tls", "none":
	default:
		errs.Add(p+".tls", "want starttls, starttls-required, tls or none, got %q", e.TLS)
	}
	if e.PasswordFile != "" {
		if e.Username == "" {
			errs.Add(p+".username", "required with password_file")
		}
		if _, err := os.Stat(e.PasswordFile); err != nil {
			errs.Add(p+".password_file", "%v", err)
		}
	}
	checkTemplate(errs, p+".subject", e.Subject)
	checkTemplate(errs, p+".body", e.Body)
}

// validate adds the problems of a webhook channel at YAML path p.
func (w *WebhookConfig) validate(errs *yamlconf.Problems, p string) {
	checkURL(errs, p+".url", w.URL)
	if f := w.Format; f != "" && f != "alertmanager" && f != "slack" {
		errs.Add(p+".format", "want alertmanager or slack, got %q", f)
	}
	if w.BearerTokenFile != "" {
		if _, err := os.Stat(w.BearerTokenFile); err != nil {
			errs.Add(p+".bearer_token_file", "%v", err)
		}
	}
	checkTemplate(errs, p+".text", w.Text)
}

// validate adds the problems of an inhibit rule at YAML path p.
func (r *InhibitRule) validate(errs *yamlconf.Problems, p string) {
	if len(r.SourceMatchers) == 0 {
		errs.Add(p+".source_matchers", "at least one matcher required")
	}
	if len(r.TargetMatchers) == 0 {
		errs.Add(p+".target_matchers", "at least one matcher required")
	}
	for j, s := range r.SourceMatchers {
		if _, err := ParseMatcher(s); err != nil {
			errs.Add(fmt.Sprintf("%s.source_matchers[%d]", p, j), "%v", err)
		}
	}
	for j, s := range r.TargetMatchers {
		if _, err := ParseMatcher(s); err != nil {
			errs.Add(fmt.Sprintf("%s.target_matchers[%d]", p, j), "%v", err)
		}
	}
}

func (c *Config) validateRoute(errs *yamlconf.Problems, p string, r *Route, names map[string]bool, root bool) {
	if r.Receiver != "" && !names[r.Receiver] {
		errs.Add(p+".receiver", "no channel named %q in notify", r.Receiver)
	}
	if root && len(r.Matchers) > 0 {
		errs.Add(p+".matchers", "the root route matches every alert; put matchers on child routes")
	}
	for j, s := range r.Matchers {
		if _, err := ParseMatcher(s); err != nil {
			errs.Add(fmt.Sprintf("%s.matchers[%d]", p, j), "%v", err)
		}
	}
	for _, d := range []struct {
		name string
		v    *yamlconf.Duration
	}{{"group_wait", r.GroupWait}, {"group_interval", r.GroupInterval}, {"repeat_interval", r.RepeatInterval}} {
		if d.v != nil && d.v.D() < 0 {
			errs.Add(p+"."+d.name, "must not be negative")
		}
	}
	if r.GroupInterval != nil && r.GroupInterval.D() == 0 {
		errs.Add(p+".group_interval", "must be positive")
	}
	for i, c2 := range r.Routes {
		c.validateRoute(errs, fmt.Sprintf("%s.routes[%d]", p, i), c2, names, false)
	}
}

func checkURL(errs *yamlconf.Problems, path, s string) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs.Add(path, "want an http:// or https:// URL, got %q", s)
	}
}

func checkTemplate(errs *yamlconf.Problems, path, s string) {
	if s == "" {
		return
	}
	if _, err := template.New("t").Funcs(templateFuncs).Parse(s); err != nil {
		errs.Add(path, "%v", err)
	}
}

// readSecret reads a secret file, trimming a trailing newline.
func readSecret(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", errors.New("reading secret file: empty")
	}
	return s, nil
}
