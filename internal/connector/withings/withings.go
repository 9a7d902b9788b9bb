// Package withings is the withings wearable source: a hand-written client of the Withings
// Public API (no official Go library exists) following its reference field by field.
//
// OAuth 2.0: consent at account.withings.com/oauth2_user/authorize2 (scopes comma separated;
// PKCE S256 parameters are sent too), tokens from OAuth2 – Requesttoken (POST
// <api_url>/v2/oauth2, action=requesttoken) whose answers are wrapped in the Withings envelope
// {"status":0,"body":{...}}. Every refresh rotates the refresh token: the Token a TokenSource
// returns carries the new one, which the caller must store. A refused code or refresh token
// (status 503 "Invalid Params: invalid code" / "invalid refresh_token") is translated to
// *oauth2.RetrieveError with ErrorCode "invalid_grant", what RFC 6749 and Google answer.
//
// Pull reads Measure – Getmeas (action=getmeas, meastypes=9,10,11,54, category=1,
// startdate/enddate, offset/more paging) and maps each measure group, value × 10^unit:
//
//	diastolic (9) + systolic (10) [+ heart pulse (11)]  → blood_pressure {systolic, diastolic, pulse}
//	heart pulse (11) without 9/10                      → heart_rate {bpm}
//	SpO2 (54)                                          → spo2 {percent}
//
// at the group's date. Groups Withings marks as possibly another user's (attrib 1) or entered
// at account creation (attrib 4) are skipped, as are groups with only one of 9 and 10. Each
// reading's id is a hash of the subject, the group id and the kind, so a re-pull is a
// duplicate. The device is "withings-<model>-<first 8 hex of hash_deviceid>", "withings-manual"
// for groups the user typed in.
//
// Withings answers errors with HTTP 200 and a non-zero status: Pull returns them as *APIError
// (Temporary for 601, the rate limit). Non-200 HTTP answers (429, 503 from a proxy or the
// tests' fake) are *HTTPError, with the headers for Retry-After; retrying them belongs to the
// transport of the client passed to Pull.
//
// A Provider holds no per-user state and is safe for concurrent use.
package withings

import (
	"bytes"
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
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// Defaults of Options (Withings' published endpoints).
const (
	DefaultAPIURL  = "https://wbsapi.withings.net/"
	DefaultAuthURL = "https://account.withings.com/oauth2_user/authorize2"
)

// Measures is the one data type: every Getmeas measure group (blood pressure, heart rate,
// SpO2) in one listing, as the API serves them.
const Measures = "measures"

// DefaultScopes is what Getmeas needs.
var DefaultScopes = []string{"user.metrics"}

// Limits on what a Withings answer may hold.
const (
	maxBody      = 32 << 20 // bytes of one answer
	maxPages     = 100000   // pages of one pull: far above any account's history
	tokenTimeout = 30 * time.Second
)

// Options configure a Provider. ClientID, ClientSecret and RedirectURL are required.
type Options struct {
	ClientID     string
	ClientSecret string
	RedirectURL  string   // a callback URL registered in the Withings developer dashboard
	APIURL       string   // default DefaultAPIURL
	AuthURL      string   // default DefaultAuthURL
	TokenURL     string   // default APIURL + "v2/oauth2"
	Scopes       []string // default DefaultScopes
	Logger       *slog.Logger
}

// Provider is the withings source. Create it with New.
type Provider struct {
	opts Options
	log  *slog.Logger
}

// New validates opts and returns a Provider.
func New(opts Options) (*Provider, error) {
	if opts.APIURL == "" {
		opts.APIURL = DefaultAPIURL
	}
	if !strings.HasSuffix(opts.APIURL, "/") {
		opts.APIURL += "/"
	}
	if opts.AuthURL == "" {
		opts.AuthURL = DefaultAuthURL
	}
	if opts.TokenURL == "" {
		opts.TokenURL = opts.APIURL + "v2/oauth2"
	}
	if len(opts.Scopes) == 0 {
		opts.Scopes = DefaultScopes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if opts.ClientID == "" {
		errs = append(errs, errors.New("client_id is empty: set the client ID of the Withings developer application"))
	}
	if opts.ClientSecret == "" {
		errs = append(errs, errors.New("client secret is empty: set client_secret_file to a file holding the application's secret"))
	}
	for _, u := range []struct{ name, value string }{
		{"redirect_url", opts.RedirectURL}, {"api_url", opts.APIURL}, {"auth_url", opts.AuthURL}, {"token_url", opts.TokenURL},
	} {
		pu, err := url.Parse(u.value)
		if err == nil && ((pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "") {
			err = errors.New("want an absolute http(s) URL")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", u.name, u.value, err))
		}
	}
	for _, s := range opts.Scopes {
		if s == "" || strings.ContainsAny(s, ", \t") {
			errs = append(errs, fmt.Errorf("scope %q: a Withings scope is one word such as user.metrics", s))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("configuring withings: %w", errors.Join(errs...))
	}
	opts.Scopes = append([]string(nil), opts.Scopes...)
	return &Provider{opts: opts, log: opts.Logger}, nil
}

// Name returns "withings".
func (p *Provider) Name() string { return "withings" }

// DataTypes returns the one data type, Measures.
func (p *Provider) DataTypes() []string { return []string{Measures} }

// RequestsPerMinute returns Withings' documented limit: 120 requests a minute per application.
func (p *Provider) RequestsPerMinute() (int, bool) { return 120, false }

// AuthCodeURL returns the consent page URL.
func (p *Provider) AuthCodeURL(state, codeVerifier string) string {
	u, _ := url.Parse(p.opts.AuthURL) // validated by New
	q := u.Query()
	q.Set("response_type", "code")
	q.Set("client_id", p.opts.ClientID)
	q.Set("scope", strings.Join(p.opts.Scopes, ","))
	q.Set("redirect_uri", p.opts.RedirectURL)
	q.Set("state", state)
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(codeVerifier))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	return u.String()
}

// Exchange trades an authorization code (valid 30 seconds) for a token. The token's Extra
// holds "userid" and "scope". The HTTP client is the one in ctx under oauth2.HTTPClient, if any.
func (p *Provider) Exchange(ctx context.Context, code, codeVerifier string) (*oauth2.Token, error) {
	t, err := p.requestToken(ctx, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {p.opts.RedirectURL},
		"code_verifier": {codeVerifier},
	})
	if err != nil {
		return nil, fmt.Errorf("exchanging the withings authorization code: %w", err)
	}
	return t, nil
}

// TokenSource returns a source that refreshes t when it expires (with oauth2's 10-second
// margin). Each refresh returns a new refresh token.
func (p *Provider) TokenSource(ctx context.Context, t *oauth2.Token) oauth2.TokenSource {
	return oauth2.ReuseTokenSource(t, &refresher{p: p, ctx: ctx, refreshToken: t.RefreshToken})
}

type refresher struct {
	p   *Provider
	ctx context.Context // the caller's, like oauth2.Config.TokenSource's

	mu           sync.Mutex
	refreshToken string
}

func (r *refresher) Token() (*oauth2.Token, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refreshToken == "" {
		return nil, errors.New("refreshing the withings token: the token has no refresh token; connect withings again")
	}
	t, err := r.p.requestToken(r.ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.refreshToken}})
	if err != nil {
		return nil, fmt.Errorf("refreshing the withings token: %w", err)
	}
	r.refreshToken = t.RefreshToken
	return t, nil
}

// tokenBody is the body of a Requesttoken answer.
type tokenBody struct {
	UserID       flexString `json:"userid"`
	AccessToken  string     `json:"access_token"`
	RefreshToken string     `json:"refresh_token"`
	ExpiresIn    int64      `json:"expires_in"`
	Scope        string     `json:"scope"`
	TokenType    string     `json:"token_type"`
}

func (p *Provider) requestToken(ctx context.Context, form url.Values) (*oauth2.Token, error) {
	form.Set("action", "requesttoken")
	form.Set("client_id", p.opts.ClientID)
	form.Set("client_secret", p.opts.ClientSecret)
	hc, _ := ctx.Value(oauth2.HTTPClient).(*http.Client)
	if hc == nil {
		hc = &http.Client{Timeout: tokenTimeout}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body, err := do(hc, req)
	if err != nil {
		return nil, err
	}
	env, err := decodeEnvelope(body)
	if err != nil {
		return nil, err
	}
	if env.Status != 0 {
		if isInvalidGrant(env) {
			return nil, &oauth2.RetrieveError{Response: resp, Body: body, ErrorCode: "invalid_grant", ErrorDescription: env.Error}
		}
		return nil, &APIError{Status: env.Status, Message: env.Error}
	}
	var tb tokenBody
	if err := json.Unmarshal(env.Body, &tb); err != nil {
		return nil, fmt.Errorf("decoding the withings token: %w", err)
	}
	if tb.AccessToken == "" || tb.RefreshToken == "" {
		return nil, errors.New("decoding the withings token: the answer lacks access_token or refresh_token")
	}
	tokenType := tb.TokenType
	if tokenType == "" {
		tokenType = "Bearer"
	}
	t := &oauth2.Token{AccessToken: tb.AccessToken, TokenType: tokenType, RefreshToken: tb.RefreshToken, ExpiresIn: tb.ExpiresIn}
	if tb.ExpiresIn > 0 {
		t.Expiry = time.Now().Add(time.Duration(tb.ExpiresIn) * time.Second)
	}
	return t.WithExtra(map[string]any{"userid": string(tb.UserID), "scope": tb.Scope}), nil
}

// isInvalidGrant reports whether a Requesttoken error means the code or refresh token is
// refused: Withings answers status 503 "Invalid Params: invalid code" or "... invalid
// refresh_token" (its FAQ), and 100/101/102/200/401 "Authentication failed" for credentials it
// no longer accepts.
func isInvalidGrant(env *envelope) bool {
	msg := strings.ToLower(env.Error)
	switch env.Status {
	case 503:
		return strings.Contains(msg, "invalid code") || strings.Contains(msg, "invalid refresh_token")
	case 100, 101, 102, 200, 401:
		return !strings.Contains(msg, "client")
	}
	return false
}

// do sends req and reads at most maxBody bytes of the answer; a non-200 answer is *HTTPError.
func do(hc *http.Client, req *http.Request) (*http.Response, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the withings answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		if len(body) > 512 {
			body = body[:512]
		}
		return nil, nil, &HTTPError{StatusCode: resp.StatusCode, Header: resp.Header, Body: string(bytes.ToValidUTF8(body, nil))}
	}
	if len(body) > maxBody {
		return nil, nil, fmt.Errorf("the withings answer is larger than %d MiB", maxBody>>20)
	}
	return resp, body, nil
}

// Pull reads the measure groups dated in [start, end) and emits each page as readings of
// subject. It returns the number of pages read.
func (p *Provider) Pull(ctx context.Context, hc *http.Client, subject, dataType string, start, end time.Time,
	emit func(readings []json.RawMessage) error) (int, error) {
	if dataType != Measures {
		return 0, fmt.Errorf("pulling withings: unknown data type %q; known: %s", dataType, Measures)
	}
	if !start.Before(end) {
		return 0, fmt.Errorf("pulling withings: empty window [%s, %s)", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	var offset int64
	pages := 0
	for {
		if pages >= maxPages {
			return pages, fmt.Errorf("pulling withings: more than %d pages; stopping", maxPages)
		}
		form := url.Values{
			"action":    {"getmeas"},
			"meastypes": {"9,10,11,54"},
			"category":  {"1"},
			"startdate": {strconv.FormatInt(start.Unix(), 10)},
			// enddate is inclusive; groups at end or later are dropped below.
			"enddate": {strconv.FormatInt(end.Unix(), 10)},
		}
		if offset > 0 {
			form.Set("offset", strconv.FormatInt(offset, 10))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.opts.APIURL+"measure", strings.NewReader(form.Encode()))
		if err != nil {
			return pages, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		_, body, err := do(hc, req)
		if err != nil {
			return pages, fmt.Errorf("pulling withings (page %d): %w", pages+1, err)
		}
		page, err := decodeGetmeas(body)
		if err != nil {
			return pages, fmt.Errorf("pulling withings (page %d): %w", pages+1, err)
		}
		pages++
		readings, skipped := mapGroups(subject, page.MeasureGroups, start, end)
		for _, err := range skipped {
			p.log.Warn("skipping a withings measure group", "subject", subject, "err", err)
		}
		if len(readings) > 0 {
			raw := make([]json.RawMessage, len(readings))
			for i := range readings {
				raw[i] = readings[i].AppendJSON(nil)
			}
			if err := emit(raw); err != nil {
				return pages, fmt.Errorf("pulling withings: %w", err)
			}
		}
		if !page.More {
			return pages, nil
		}
		if page.Offset <= offset {
			return pages, fmt.Errorf("pulling withings: the answer says more but its offset %d does not advance past %d", page.Offset, offset)
		}
		offset = page.Offset
	}
}

// readingID is a reading's stable id: a hash of the subject, the group id and the kind.
func readingID(subject string, grpid int64, kind string) string {
	sum := sha256.Sum256([]byte(subject + "\x00" + strconv.FormatInt(grpid, 10) + "\x00" + kind))
	return "withings:" + hex.EncodeToString(sum[:16])
}
