package config

import (
	"fmt"
	"net/url"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Connectors configures the wearable clouds serve pulls on a schedule and `pulselake pull`
// pulls once (SPEC §10, docs/sources.md). A provider is on when its client_id is set.
type Connectors struct {
	GoogleHealth Connector `yaml:"google_health"`
	Withings     Connector `yaml:"withings"`
}

// Connector is one provider's OAuth client and sync timing.
type Connector struct {
	// ClientID of the OAuth client registered with the provider; empty turns the provider off.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the OAuth client secret (never written inline in the file).
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is the OAuth redirect URI registered with the provider: serve's
	// /v1/connect/<provider>/callback (default on 127.0.0.1:8080). `pulselake connect`
	// listens on its port when serve is not running.
	RedirectURL string `yaml:"redirect_url"`
	// APIURL, AuthURL and TokenURL are the provider's endpoints (defaults: the provider's
	// published ones); overridable for tests and proxies.
	APIURL   string `yaml:"api_url"`
	AuthURL  string `yaml:"auth_url"`
	TokenURL string `yaml:"token_url"`
	// DataTypes to pull (default: every type the provider offers).
	DataTypes []string `yaml:"data_types"`
	// Every is the pull interval in serve (default 15m).
	Every yamlconf.Duration `yaml:"every"`
	// InitialWindow is how far back the first pull of a connection reaches (default 30d).
	InitialWindow yamlconf.Duration `yaml:"initial_window"`
	// Lookback is re-pulled before the cursor on every pull, for devices that sync late
	// (default 7d).
	Lookback yamlconf.Duration `yaml:"lookback"`
	// MaxRetries bounds the retries of one request answered 429, 503 or 504 or failed in
	// transit (default 5).
	MaxRetries int `yaml:"max_retries"`
}

// Enabled reports whether the provider is configured.
func (c Connector) Enabled() bool { return c.ClientID != "" }

// Connector names (SPEC §10) and their YAML keys.
const (
	GoogleHealth = "google-health"
	Withings     = "withings"
)

// ByName returns the configuration of a provider by its name (google-health, withings).
func (c Connectors) ByName(name string) (Connector, bool) {
	switch name {
	case GoogleHealth:
		return c.GoogleHealth, true
	case Withings:
		return c.Withings, true
	}
	return Connector{}, false
}

func defaultConnectors() Connectors {
	timing := func(c Connector) Connector {
		c.Every = yamlconf.Duration(15 * time.Minute)
		c.InitialWindow = yamlconf.Duration(30 * 24 * time.Hour)
		c.Lookback = yamlconf.Duration(7 * 24 * time.Hour)
		c.MaxRetries = 5
		return c
	}
	return Connectors{
		GoogleHealth: timing(Connector{
			RedirectURL: "http://127.0.0.1:8080/v1/connect/google-health/callback",
			APIURL:      "https://health.googleapis.com/",
			AuthURL:     "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL:    "https://oauth2.googleapis.com/token",
		}),
		Withings: timing(Connector{
			RedirectURL: "http://127.0.0.1:8080/v1/connect/withings/callback",
			APIURL:      "https://wbsapi.withings.net/",
			AuthURL:     "https://account.withings.com/oauth2_user/authorize2",
			TokenURL:    "https://wbsapi.withings.net/v2/oauth2",
		}),
	}
}

func (c Connectors) validate(ps *Problems) {
	for _, p := range []struct {
		key string
		c   Connector
	}{{"connectors.google_health", c.GoogleHealth}, {"connectors.withings", c.Withings}} {
		if !p.c.Enabled() {
			continue
		}
		if p.c.ClientSecretFile == "" {
			ps.Add(p.key+".client_id", "client_secret_file is missing: put the OAuth client secret in a file (mode 0600) and name it here")
		}
		for _, u := range []struct{ key, v string }{{"redirect_url", p.c.RedirectURL}, {"api_url", p.c.APIURL}, {"auth_url", p.c.AuthURL}, {"token_url", p.c.TokenURL}} {
			pu, err := url.Parse(u.v)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
				ps.Add(p.key+"."+u.key, "want an http:// or https:// URL, got %q", u.v)
			}
		}
		if d := p.c.Every.D(); d < time.Second {
			ps.Add(p.key+".every", "must be at least 1s, got %s", d)
		}
		if d := p.c.InitialWindow.D(); d < time.Hour || d > 10*365*24*time.Hour {
			ps.Add(p.key+".initial_window", "must be 1h..3650d, got %s", d)
		}
		if d := p.c.Lookback.D(); d < 0 || d > 10*365*24*time.Hour {
			ps.Add(p.key+".lookback", "must be 0..3650d, got %s", d)
		}
		if p.c.MaxRetries < 0 || p.c.MaxRetries > 20 {
			ps.Add(p.key+".max_retries", "must be 0..20, got %d", p.c.MaxRetries)
		}
		seen := map[string]bool{}
		for i, t := range p.c.DataTypes {
			if t == "" || seen[t] {
				ps.Add(fmt.Sprintf("%s.data_types[%d]", p.key, i), "empty or repeated data type %q", t)
			}
			seen[t] = true
		}
	}
}
