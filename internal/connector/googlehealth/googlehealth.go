// Package googlehealth is the google-health wearable source: a client of the Google Health API
// v4 (health.googleapis.com, the Fitbit Web API's successor) through Google's generated client
// google.golang.org/api/health/v4, and Google's OAuth 2.0 web-server flow with PKCE through
// golang.org/x/oauth2.
//
// Pull lists the data points of one data type in a time window, page by page, and turns each
// page into wire-format v1 readings (SPEC §3):
//
//	heart-rate         → heart_rate {bpm}                    time: sample physical time
//	oxygen-saturation  → spo2 {percent}                      time: sample physical time
//	steps              → steps {count, interval_s}           time: interval start
//	sleep              → sleep {stage, duration_s}, one per stage segment; time: segment start
//	electrocardiogram  → ecg {fs, samples in mV}             time: reading time
//
// The window [start, end) applies to the time the API filters on: sample time, interval start
// (steps, electrocardiogram) or session end (sleep, the only field the API filters sleep on).
// Each reading carries a stable id hashed from the subject and the point's identity (data
// type, point name, data source, times; never the values), so a re-pull of the same point is a duplicate.
// Points the API returns malformed (no time, no waveform scale, unknown stage) are skipped
// and logged, never fatal to a pull.
//
// Revoke revokes a grant at Google's revocation endpoint (beside the token endpoint), and
// Window sizes the sync engine's pull windows per data type.
//
// A Provider holds no per-user state and is safe for concurrent use; the user is the one whose
// token the *http.Client passed to Pull carries. Retries and rate limiting belong to that
// client's transport: Pull returns the *googleapi.Error of a failed call, wrapped.
package googlehealth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/googleapi"
	health "google.golang.org/api/health/v4"
	"google.golang.org/api/option"
)

// Defaults of Options (Google's published endpoints).
const (
	DefaultAPIURL   = "https://health.googleapis.com/"
	DefaultAuthURL  = "https://accounts.google.com/o/oauth2/v2/auth"
	DefaultTokenURL = "https://oauth2.googleapis.com/token"
)

// Data types Pull accepts.
const (
	HeartRate         = "heart-rate"
	OxygenSaturation  = "oxygen-saturation"
	Steps             = "steps"
	Sleep             = "sleep"
	Electrocardiogram = "electrocardiogram"
)

// DefaultScopes are the restricted read-only scopes the data types need.
var DefaultScopes = []string{
	health.GooglehealthActivityAndFitnessReadonlyScope,           // steps
	health.GooglehealthHealthMetricsAndMeasurementsReadonlyScope, // heart-rate, oxygen-saturation
	health.GooglehealthSleepReadonlyScope,                        // sleep
	health.GooglehealthEcgReadonlyScope,                          // electrocardiogram
}

// typeSpec says how a data type is listed.
type typeSpec struct {
	filterField string // the AIP-160 field the window applies to
	onlyGE      bool   // the API accepts only ">=" on it (electrocardiogram)
	pageSize    int64
}

var types = map[string]typeSpec{
	HeartRate:        {"heart_rate.sample_time.physical_time", false, 10000},
	OxygenSaturation: {"oxygen_saturation.sample_time.physical_time", false, 10000},
	Steps:            {"steps.interval.start_time", false, 10000},
	Sleep:            {"sleep.interval.end_time", false, 25}, // the API's maximum for sleep
	// An ECG point carries its waveform (about 7,500 samples for 30 s at 250 Hz): 100 points
	// keep a page near 5 MB.
	Electrocardiogram: {"electrocardiogram.interval.start_time", true, 100},
}

var dataTypes = []string{HeartRate, OxygenSaturation, Steps, Sleep, Electrocardiogram}

// Options configure a Provider. ClientID, ClientSecret and RedirectURL are required.
type Options struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string   // where Google redirects after consent (serve's callback or a loopback)
	APIURL       string   // default DefaultAPIURL
	AuthURL      string   // default DefaultAuthURL
	TokenURL     string   // default DefaultTokenURL
	Scopes       []string // default DefaultScopes
	Logger       *slog.Logger
}

// Provider is the google-health source. Create it with New.
type Provider struct {
	apiURL    string
	revokeURL string
	oauth     *oauth2.Config
	log       *slog.Logger
}

// New validates opts and returns a Provider.
func New(opts Options) (*Provider, error) {
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	if opts.AuthURL == "" {
		opts.AuthURL = DefaultAuthURL
	}
	if opts.TokenURL == "" {
		opts.TokenURL = DefaultTokenURL
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = DefaultScopes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if opts.ClientID == "" {
		errs = append(errs, errors.New("client_id is empty: set the OAuth client ID of the Google Cloud project (…apps.googleusercontent.com)"))
	}
	if opts.ClientSecret == "" {
		errs = append(errs, errors.New("client secret is empty: set client_secret_file to a file holding the OAuth client's secret"))
	}
	for _, u := range []struct{ name, value string }{
		{"redirect_url", opts.RedirectURL}, {"api_url", opts.APIURL}, {"auth_url", opts.AuthURL}, {"token_url", opts.TokenURL},
	} {
		if err := checkURL(u.value); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", u.name, u.value, err))
		}
	}
	if u, err := url.Parse(opts.APIURL); err == nil && strings.EqualFold(u.Hostname(), "api.fitbit.com") {
		errs = append(errs, fmt.Errorf("api_url %q: %w; set api_url to %s", opts.APIURL, ErrFitbitRetired, DefaultAPIURL))
	}
	for _, s := range opts.Scopes {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, " \t\n") {
			errs = append(errs, fmt.Errorf("scope %q: a scope is one URL without spaces", s))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuring google-health: %w", errors.Join(errs...))
	}
	if !strings.HasSuffix(opts.APIURL, "/") {
		opts.APIURL += "/"
	}
	return &Provider{
		apiURL:    opts.APIURL,
		revokeURL: revokeURL(opts.TokenURL),
		oauth: &oauth2.Config{
			ClientID:     opts.ClientID,
			ClientSecret: opts.ClientSecret,
			RedirectURL:  opts.RedirectURL,
			Endpoint:     oauth2.Endpoint{AuthURL: opts.AuthURL, TokenURL: opts.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
			Scopes:       append([]string(nil), opts.Scopes...),
		},
		log: opts.Logger,
	}, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an absolute http(s) URL")
	}
	return nil
}

// Name returns "google-health".
func (p *Provider) Name() string { return "google-health" }

// DataTypes returns the data types Pull accepts.
func (p *Provider) DataTypes() []string { return append([]string(nil), dataTypes...) }

// RequestsPerMinute returns the Google Health API's documented quota: 300 requests a minute per
// user.
func (p *Provider) RequestsPerMinute() (int, bool) { return 300, true }

// AuthCodeURL returns the consent page URL: offline access (a refresh token), consent prompted
// every time (so a reconnect gets a new refresh token), PKCE S256 from codeVerifier.
func (p *Provider) AuthCodeURL(state, codeVerifier string) string {
	return p.oauth.AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.ApprovalForce,
		oauth2.S256ChallengeOption(codeVerifier))
}

// Exchange trades an authorization code for a token. The HTTP client is the one in ctx under
// oauth2.HTTPClient, if any.
func (p *Provider) Exchange(ctx context.Context, code, codeVerifier string) (*oauth2.Token, error) {
	t, err := p.oauth.Exchange(ctx, code, oauth2.VerifierOption(codeVerifier))
	if err != nil {
		return nil, fmt.Errorf("exchanging the google-health authorization code: %w", err)
	}
	if t.RefreshToken == "" {
		return nil, errors.New("exchanging the google-health authorization code: Google returned no refresh token; " +
			"remove the app's access at https://myaccount.google.com/permissions and connect again")
	}
	return t, nil
}

// TokenSource returns a source that refreshes t when it expires. A revoked or expired grant
// fails with *oauth2.RetrieveError of ErrorCode "invalid_grant", which is what Google answers.
func (p *Provider) TokenSource(ctx context.Context, t *oauth2.Token) oauth2.TokenSource {
	return p.oauth.TokenSource(ctx, t)
}

// Window sizes the pull windows of the sync engine per data type: a day of heart rate (tens of
// thousands of points, a few pages), a week of SpO2 and steps, a month of sleep sessions and
// ECG recordings (a few a week; the API filters ECG on the start only, so short windows would
// list the same later recordings again).
func (p *Provider) Window(dataType string) time.Duration {
	switch dataType {
	case HeartRate:
		return 24 * time.Hour
	case OxygenSaturation, Steps:
		return 7 * 24 * time.Hour
	case Sleep, Electrocardiogram:
		return 30 * 24 * time.Hour
	}
	return 0
}

// revokeURL is Google's revocation endpoint beside the token endpoint: .../token → .../revoke.
func revokeURL(tokenURL string) string {
	u, err := url.Parse(tokenURL)
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(u.Path, '/')
	u.Path = u.Path[:i+1] + "revoke"
	u.RawQuery = ""
	return u.String()
}

// Revoke revokes the grant of t at Google (the refresh token, else the access token), as
// disconnecting should. A token Google already considers invalid counts as revoked.
func (p *Provider) Revoke(ctx context.Context, t *oauth2.Token) error {
	tok := t.RefreshToken
	if tok == "" {
		tok = t.AccessToken
	}
	if tok == "" {
		return errors.New("revoking the google-health grant: the token is empty")
	}
	hc, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.revokeURL, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	if err != nil {
		return fmt.Errorf("revoking the google-health grant: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("revoking the google-health grant: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error == "invalid_token" {
		return nil // already revoked or expired
	}
	return fmt.Errorf("revoking the google-health grant: Google answered %s", resp.Status)
}

// Pull lists the points of dataType whose filtered time lies in [start, end) and emits each
// page as readings of subject. It returns the number of pages read.
func (p *Provider) Pull(ctx context.Context, hc *http.Client, subject, dataType string, start, end time.Time,
	emit func(readings []json.RawMessage) error) (int, error) {
	spec, ok := types[dataType]
	if !ok {
		return 0, fmt.Errorf("pulling google-health: unknown data type %q; known: %s", dataType, strings.Join(dataTypes, ", "))
	}
	if !start.Before(end) {
		return 0, fmt.Errorf("pulling google-health %s: empty window [%s, %s)", dataType, start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	svc, err := health.NewService(ctx, option.WithHTTPClient(hc), option.WithEndpoint(p.apiURL))
	if err != nil {
		return 0, fmt.Errorf("pulling google-health %s: making the API client: %w", dataType, err)
	}
	start, end = start.UTC(), end.UTC()
	filter := fmt.Sprintf(`%s >= "%s"`, spec.filterField, start.Format(time.RFC3339Nano))
	if !spec.onlyGE {
		filter += fmt.Sprintf(` AND %s < "%s"`, spec.filterField, end.Format(time.RFC3339Nano))
	}
	call := svc.Users.DataTypes.DataPoints.List("users/me/dataTypes/" + dataType).
		Filter(filter).PageSize(spec.pageSize).Context(ctx)
	seen := map[string]bool{}
	pages := 0
	for {
		resp, err := call.Do()
		if err != nil {
			return pages, fmt.Errorf("pulling google-health %s (page %d): %w", dataType, pages+1, apiError(err))
		}
		pages++
		var readings []json.RawMessage
		for _, dp := range resp.DataPoints {
			if !inWindow(dataType, dp, start, end) {
				continue
			}
			rs, err := mapPoint(dataType, subject, dp)
			if err != nil {
				p.log.Warn("skipping a malformed google-health data point", "type", dataType, "subject", subject, "err", err)
				continue
			}
			for i := range rs {
				readings = append(readings, rs[i].AppendJSON(nil))
			}
		}
		if len(readings) > 0 {
			if err := emit(readings); err != nil {
				return pages, fmt.Errorf("pulling google-health %s: %w", dataType, err)
			}
		}
		if resp.NextPageToken == "" {
			return pages, nil
		}
		if seen[resp.NextPageToken] {
			return pages, fmt.Errorf("pulling google-health %s: the API repeated page token %q; stopping", dataType, resp.NextPageToken)
		}
		seen[resp.NextPageToken] = true
		call.PageToken(resp.NextPageToken)
	}
}

// apiError adds advice to the API errors a user can act on; the *googleapi.Error stays in the
// chain for the caller (status, Retry-After header).
func apiError(err error) error {
	var ge *googleapi.Error
	if !errors.As(err, &ge) {
		return err
	}
	switch ge.Code {
	case http.StatusGone:
		return fmt.Errorf("%w: %w", ErrFitbitRetired, err)
	case http.StatusForbidden:
		return fmt.Errorf("%w (the grant lacks this data type's scope, or the Google Cloud project lacks the Google Health API: "+
			"enable the API and connect google-health again, granting every requested permission)", err)
	case http.StatusUnauthorized:
		return fmt.Errorf("%w (the access token was refused: connect google-health again if this persists)", err)
	}
	return err
}

// readingID is a reading's stable id: a hash of the subject and the point's identity (the
// subject too, so one Google account connected to two subjects gives two readings).
func readingID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return "google-health:" + hex.EncodeToString(h.Sum(nil)[:16])
}
