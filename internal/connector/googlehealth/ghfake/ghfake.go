// Package ghfake is an in-process fake of Google's OAuth 2.0 authorization server and of the
// Google Health API v4 data-points listing, for tests of the google-health connector. It
// follows the published references field by field: the discovery document of
// health.googleapis.com (paths, query parameters, JSON field names, paging), Google's OAuth 2.0
// web-server flow (authorize, token, revoke) and Google's error bodies.
//
// # Endpoints
//
//	GET  /o/oauth2/v2/auth      authorize (AuthURL). The consenting user (SetConsentingUser,
//	                            default "user-1") approves at once: 302 to redirect_uri with
//	                            code and state. Checked: response_type=code, client_id,
//	                            redirect_uri (Options.RedirectURLs when set), scope (space
//	                            separated, only Google Health scopes), code_challenge with
//	                            code_challenge_method=S256. A bad client or redirect URI gets
//	                            Google's error page (400, no redirect); a refusal set with
//	                            SetDenyConsent redirects with error=access_denied.
//	POST /token                 token (TokenURL). grant_type=authorization_code: code (single
//	                            use, 10 minutes), redirect_uri, code_verifier (S256 of it must
//	                            equal the challenge); a refresh_token is issued only when the
//	                            authorize request had access_type=offline. grant_type=refresh_token:
//	                            a new access token, the refresh token is not rotated. Client
//	                            authentication by client_id/client_secret in the body or HTTP
//	                            Basic. Errors as RFC 6749 §5.2: 400 {"error":"invalid_grant",
//	                            "error_description":"..."}, 401 {"error":"invalid_client",...}.
//	POST /revoke                revoke (token=<access or refresh token>): the whole grant;
//	                            an unknown or already revoked token answers 400 invalid_token.
//	GET  /v4/users/{user}/dataTypes/{dataType}/dataPoints
//	                            list (APIURL). {user} is "me" or the token's user. Data types
//	                            heart-rate, oxygen-saturation, steps, sleep, electrocardiogram.
//	                            filter: AIP-160 conjunction (AND) of comparisons on the one
//	                            field each type documents: <type>.sample_time.physical_time
//	                            (heart_rate, oxygen_saturation; >= and <),
//	                            steps.interval.start_time (>= and <), sleep.interval.end_time
//	                            (>= and <), electrocardiogram.interval.start_time (>= only);
//	                            RFC 3339 literals in double quotes. Anything else is 400
//	                            INVALID_ARGUMENT (civil-time filters and OR are not faked).
//	                            pageSize: default 1440 (25 for sleep), at most 10000 (25 for
//	                            sleep), larger values truncated. pageToken: the nextPageToken
//	                            of the previous page for the same filter, else 400. Points are
//	                            returned newest first (interval or sample start, descending).
//	                            The bearer token must be live (401 UNAUTHENTICATED otherwise,
//	                            with WWW-Authenticate) and carry the data type's read scope
//	                            (403 PERMISSION_DENIED otherwise).
//	ANY  /fitbit/...            the retired Fitbit Web API (FitbitAPIURL): 410 Gone.
//
// API errors are {"error":{"code":N,"message":"...","status":"..."}}.
//
// # Test controls
//
// AddPoints seeds points per user and data type (the generated client's health.DataPoint,
// which is the API's JSON schema); SetConsentingUser, SetDenyConsent; RevokeGrant(user) revokes
// every grant of the user, after which a refresh answers invalid_grant ("Token has been expired
// or revoked.") and its access tokens answer 401; ExpireAccessTokens makes every access token
// expire now. FailNext(n, status, retryAfter) makes the next n API requests (dataPoints and
// /fitbit) answer status (429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE or 504
// DEADLINE_EXCEEDED) with a Retry-After header in whole seconds when retryAfter > 0.
// Stats counts requests by endpoint; Queries returns the query of every list request.
//
// All methods are safe for concurrent use. Close stops the server.
package ghfake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	health "google.golang.org/api/health/v4"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	ClientID     string // default "pulselake-test.apps.googleusercontent.com"
	ClientSecret string // default "test-secret"
	// RedirectURLs are the registered redirect URIs; empty accepts any http(s) URL.
	RedirectURLs []string
	// AccessTokenLifetime is the expires_in of issued access tokens; default 1h (Google's).
	AccessTokenLifetime time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Stats counts the requests served, by endpoint.
type Stats struct {
	Authorize  int // authorize requests
	Exchanges  int // authorization_code grants answered with a token
	Refreshes  int // refresh_token grants answered with a token
	TokenFails int // token requests answered with an error
	List       int // dataPoints list requests (including faulted ones)
	Faults     int // requests answered by FailNext
	Fitbit     int // requests to the retired Fitbit Web API
}

// Data types the fake serves, with the read scope each needs and the filter field it accepts.
var dataTypes = map[string]struct {
	scope       string
	filterField string
	onlyGE      bool
	maxPage     int64
	defaultPage int64
}{
	"heart-rate":        {health.GooglehealthHealthMetricsAndMeasurementsReadonlyScope, "heart_rate.sample_time.physical_time", false, 10000, 1440},
	"oxygen-saturation": {health.GooglehealthHealthMetricsAndMeasurementsReadonlyScope, "oxygen_saturation.sample_time.physical_time", false, 10000, 1440},
	"steps":             {health.GooglehealthActivityAndFitnessReadonlyScope, "steps.interval.start_time", false, 10000, 1440},
	"sleep":             {health.GooglehealthSleepReadonlyScope, "sleep.interval.end_time", false, 25, 25},
	"electrocardiogram": {health.GooglehealthEcgReadonlyScope, "electrocardiogram.interval.start_time", true, 10000, 1440},
}

// ScopeFor returns the read scope the fake requires for a data type ("" if unknown).
func ScopeFor(dataType string) string { return dataTypes[dataType].scope }

const codeLifetime = 10 * time.Minute

type authCode struct {
	user, clientID, redirectURI, challenge string
	scopes                                 []string
	offline                                bool
	expires                                time.Time
}

type grant struct {
	user    string
	scopes  []string
	revoked bool
}

type accessToken struct {
	g       *grant
	expires time.Time
}

type entry struct {
	p            *health.DataPoint
	sort, filter time.Time
}

type fault struct {
	status     int
	retryAfter time.Duration
}

// Server is a running fake. Create it with New.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu         sync.Mutex
	consenting string
	deny       bool
	codes      map[string]*authCode
	access     map[string]*accessToken
	refresh    map[string]*grant
	points     map[string]map[string][]entry // user → data type → points, newest first
	faults     []fault
	stats      Stats
	queries    []url.Values
}

// New starts a fake on a loopback port.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "pulselake-test.apps.googleusercontent.com"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "test-secret"
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:       opts,
		consenting: "user-1",
		codes:      map[string]*authCode{},
		access:     map[string]*accessToken{},
		refresh:    map[string]*grant{},
		points:     map[string]map[string][]entry{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /o/oauth2/v2/auth", s.authorize)
	mux.HandleFunc("POST /token", s.token)
	mux.HandleFunc("POST /revoke", s.revoke)
	mux.HandleFunc("GET /v4/users/{user}/dataTypes/{dataType}/dataPoints", s.list)
	mux.HandleFunc("/fitbit/", s.fitbit)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "NOT_FOUND", "The requested URL "+r.URL.Path+" was not found on this server.")
	})
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the server's base URL, without a trailing slash.
func (s *Server) URL() string { return s.srv.URL }

// AuthURL is the authorize endpoint (connectors.google_health.auth_url).
func (s *Server) AuthURL() string { return s.srv.URL + "/o/oauth2/v2/auth" }

// TokenURL is the token endpoint (connectors.google_health.token_url).
func (s *Server) TokenURL() string { return s.srv.URL + "/token" }

// APIURL is the API base URL (connectors.google_health.api_url), with a trailing slash.
func (s *Server) APIURL() string { return s.srv.URL + "/" }

// FitbitAPIURL is a base URL standing for the retired https://api.fitbit.com/: every request
// under it answers 410 Gone.
func (s *Server) FitbitAPIURL() string { return s.srv.URL + "/fitbit/" }

// ClientID and ClientSecret are the registered client's credentials.
func (s *Server) ClientID() string     { return s.opts.ClientID }
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// SetConsentingUser sets the user who signs in and consents at the next authorize requests.
func (s *Server) SetConsentingUser(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consenting = user
}

// SetDenyConsent makes the user refuse consent (redirect with error=access_denied).
func (s *Server) SetDenyConsent(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny = deny
}

// AddPoints seeds points of a data type (heart-rate, oxygen-saturation, steps, sleep,
// electrocardiogram) for a user. Each point must set the union field of its data type.
func (s *Server) AddPoints(user, dataType string, points ...*health.DataPoint) {
	if _, ok := dataTypes[dataType]; !ok {
		panic("ghfake: unknown data type " + dataType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.points[user]
	if m == nil {
		m = map[string][]entry{}
		s.points[user] = m
	}
	for _, p := range points {
		st, err1 := sortTime(dataType, p)
		ft, err2 := filterTime(dataType, p)
		if err := errors.Join(err1, err2); err != nil {
			panic("ghfake: " + err.Error())
		}
		m[dataType] = append(m[dataType], entry{p, st, ft})
	}
	slices.SortStableFunc(m[dataType], func(a, b entry) int { return b.sort.Compare(a.sort) }) // newest first
}

// RevokeGrant revokes every grant of user, as when the user removes the app's access in their
// Google Account: its refresh tokens answer invalid_grant and its access tokens 401.
func (s *Server) RevokeGrant(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		if g.user == user {
			g.revoked = true
		}
	}
	for _, a := range s.access {
		if a.g.user == user {
			a.g.revoked = true
		}
	}
}

// ExpireAccessTokens makes every access token issued so far expire now.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for _, a := range s.access {
		a.expires = now
	}
}

// FailNext makes the next n API requests answer status with Google's error body for it, and a
// Retry-After header (whole seconds, rounded up) when retryAfter > 0.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{status, retryAfter})
	}
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Queries returns the query parameters of every list request, in order.
func (s *Server) Queries() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Authorize++
	if q.Get("client_id") != s.opts.ClientID {
		errorPage(w, "invalid_client", "The OAuth client was not found.")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(len(s.opts.RedirectURLs) > 0 && !slices.Contains(s.opts.RedirectURLs, redirect)) {
		errorPage(w, "redirect_uri_mismatch", "You can't sign in to this app because it doesn't comply with Google's OAuth 2.0 policy. redirect_uri="+redirect)
		return
	}
	fail := func(code, desc string) {
		v := u.Query()
		v.Set("error", code)
		if desc != "" {
			v.Set("error_description", desc)
		}
		if st := q.Get("state"); st != "" {
			v.Set("state", st)
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	if q.Get("response_type") != "code" {
		fail("unsupported_response_type", "response_type must be code")
		return
	}
	scopes := strings.Fields(q.Get("scope"))
	if len(scopes) == 0 {
		errorPage(w, "invalid_request", "Missing required parameter: scope")
		return
	}
	for _, sc := range scopes {
		if !strings.HasPrefix(sc, "https://www.googleapis.com/auth/googlehealth.") {
			errorPage(w, "invalid_scope", "Some requested scopes were invalid. {invalid=["+sc+"]}")
			return
		}
	}
	challenge := q.Get("code_challenge")
	if challenge == "" || q.Get("code_challenge_method") != "S256" {
		errorPage(w, "invalid_request", "code_challenge with code_challenge_method=S256 is required")
		return
	}
	if s.deny {
		fail("access_denied", "")
		return
	}
	code := "4/0" + randomToken()
	s.codes[code] = &authCode{user: s.consenting, clientID: s.opts.ClientID, redirectURI: redirect,
		challenge: challenge, scopes: scopes, offline: q.Get("access_type") == "offline",
		expires: s.opts.Now().Add(codeLifetime)}
	v := u.Query()
	v.Set("code", code)
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	v.Set("scope", strings.Join(scopes, " "))
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func errorPage(w http.ResponseWriter, code, desc string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<html><body><h1>Access blocked: Authorization Error</h1><p>Error 400: %s</p><p>%s</p></body></html>", code, desc)
}

func tokenError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		tokenError(w, http.StatusBadRequest, "invalid_request", "Could not parse the request body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	failed := func(status int, code, desc string) {
		s.stats.TokenFails++
		tokenError(w, status, code, desc)
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != s.opts.ClientID || secret != s.opts.ClientSecret {
		failed(http.StatusUnauthorized, "invalid_client", "The OAuth client was not found.")
		return
	}
	now := s.opts.Now()
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		code := r.PostForm.Get("code")
		c, ok := s.codes[code]
		if !ok || now.After(c.expires) {
			failed(http.StatusBadRequest, "invalid_grant", "Malformed auth code.")
			return
		}
		delete(s.codes, code) // single use, even when the rest of the request is wrong
		if r.PostForm.Get("redirect_uri") != c.redirectURI {
			failed(http.StatusBadRequest, "redirect_uri_mismatch", "Bad Request")
			return
		}
		verifier := r.PostForm.Get("code_verifier")
		sum := sha256.Sum256([]byte(verifier))
		if verifier == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
			failed(http.StatusBadRequest, "invalid_grant", "Invalid code verifier.")
			return
		}
		g := &grant{user: c.user, scopes: c.scopes}
		resp := s.issue(g, now)
		if c.offline {
			rt := "1//0" + randomToken()
			s.refresh[rt] = g
			resp["refresh_token"] = rt
		}
		s.stats.Exchanges++
		writeJSON(w, http.StatusOK, resp)
	case "refresh_token":
		g, ok := s.refresh[r.PostForm.Get("refresh_token")]
		if !ok || g.revoked {
			failed(http.StatusBadRequest, "invalid_grant", "Token has been expired or revoked.")
			return
		}
		s.stats.Refreshes++
		writeJSON(w, http.StatusOK, s.issue(g, now))
	default:
		failed(http.StatusBadRequest, "unsupported_grant_type", "Invalid grant_type: "+r.PostForm.Get("grant_type"))
	}
}

// issue makes an access token for g; s.mu is held.
func (s *Server) issue(g *grant, now time.Time) map[string]any {
	at := "ya29." + randomToken()
	s.access[at] = &accessToken{g: g, expires: now.Add(s.opts.AccessTokenLifetime)}
	return map[string]any{
		"access_token": at,
		"expires_in":   int(s.opts.AccessTokenLifetime / time.Second),
		"scope":        strings.Join(g.scopes, " "),
		"token_type":   "Bearer",
	}
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	_ = r.ParseForm()
	tok := r.Form.Get("token")
	s.mu.Lock()
	defer s.mu.Unlock()
	var g *grant
	if a, ok := s.access[tok]; ok {
		g = a.g
	} else if rg, ok := s.refresh[tok]; ok {
		g = rg
	}
	if g == nil || g.revoked {
		tokenError(w, http.StatusBadRequest, "invalid_token", "Token expired or revoked")
		return
	}
	g.revoked = true
	w.WriteHeader(http.StatusOK)
}

// apiStatus is the google.rpc.Code name Google's JSON errors carry for an HTTP status.
var apiStatus = map[int]string{
	400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
	429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}

var faultMessage = map[int]string{
	429: "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute per user' of service 'health.googleapis.com'.",
	500: "Internal error encountered.",
	503: "The service is currently unavailable.",
	504: "The request timed out. Please try again.",
}

func apiError(w http.ResponseWriter, code int, status, message string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "message": message, "status": status}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// takeFault pops the next injected fault and answers it; s.mu is held.
func (s *Server) takeFault(w http.ResponseWriter) bool {
	if len(s.faults) == 0 {
		return false
	}
	f := s.faults[0]
	s.faults = s.faults[1:]
	s.stats.Faults++
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
	}
	st := apiStatus[f.status]
	if st == "" {
		st = "UNKNOWN"
	}
	msg := faultMessage[f.status]
	if msg == "" {
		msg = http.StatusText(f.status)
	}
	apiError(w, f.status, st, msg)
	return true
}

func (s *Server) fitbit(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Fitbit++
	if s.takeFault(w) {
		return
	}
	writeJSON(w, http.StatusGone, map[string]any{
		"errors": []map[string]string{{
			"errorType": "gone",
			"message":   "The Fitbit Web API has been retired. Use the Google Health API (health.googleapis.com).",
		}},
		"success": false,
	})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.List++
	q := r.URL.Query()
	s.queries = append(s.queries, q)
	if s.takeFault(w) {
		return
	}
	g, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	dt := r.PathValue("dataType")
	spec, ok := dataTypes[dt]
	if !ok {
		apiError(w, 400, "INVALID_ARGUMENT", fmt.Sprintf("Invalid data type %q.", dt))
		return
	}
	if user := r.PathValue("user"); user != "me" && user != g.user {
		apiError(w, 403, "PERMISSION_DENIED", "The caller does not have permission")
		return
	}
	if !slices.Contains(g.scopes, spec.scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="`+spec.scope+`"`)
		apiError(w, 403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")
		return
	}
	lo, hi, err := parseFilter(q.Get("filter"), spec.filterField, spec.onlyGE)
	if err != nil {
		apiError(w, 400, "INVALID_ARGUMENT", err.Error())
		return
	}
	pageSize := spec.defaultPage
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			apiError(w, 400, "INVALID_ARGUMENT", fmt.Sprintf("Invalid value at 'page_size' (TYPE_INT32), %q", v))
			return
		}
		if n > 0 {
			pageSize = min(n, spec.maxPage)
		}
	}
	queryKey := dt + "\x00" + q.Get("filter")
	offset := 0
	if tok := q.Get("pageToken"); tok != "" {
		offset, err = decodePageToken(tok, queryKey)
		if err != nil {
			apiError(w, 400, "INVALID_ARGUMENT", "Invalid page token.")
			return
		}
	}
	var matched []*health.DataPoint
	for _, e := range s.points[g.user][dt] {
		if (!lo.IsZero() && e.filter.Before(lo)) || (!hi.IsZero() && !e.filter.Before(hi)) {
			continue
		}
		matched = append(matched, e.p)
	}
	resp := &health.ListDataPointsResponse{DataPoints: []*health.DataPoint{}}
	if offset < len(matched) {
		end := min(offset+int(pageSize), len(matched))
		resp.DataPoints = matched[offset:end]
		if end < len(matched) {
			resp.NextPageToken = encodePageToken(end, queryKey)
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// authenticate checks the bearer token; s.mu is held.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*grant, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/"`)
		apiError(w, 401, "UNAUTHENTICATED", "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
		return nil, false
	}
	a, ok := s.access[tok]
	if !ok || a.g.revoked || !s.opts.Now().Before(a.expires) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://accounts.google.com/", error="invalid_token"`)
		apiError(w, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.")
		return nil, false
	}
	return a.g, true
}

var clauseRe = regexp.MustCompile(`^\s*([a-z_.]+)\s*(>=|<)\s*"([^"]*)"\s*$`)

// parseFilter parses the AIP-160 subset the list method documents for one field: comparisons
// joined by AND. It returns the lower (inclusive) and upper (exclusive) bounds, zero if absent.
func parseFilter(f, field string, onlyGE bool) (lo, hi time.Time, err error) {
	if strings.TrimSpace(f) == "" {
		return lo, hi, nil
	}
	for _, clause := range strings.Split(f, " AND ") {
		m := clauseRe.FindStringSubmatch(clause)
		if m == nil {
			return lo, hi, fmt.Errorf("Invalid filter %q: expected %s >= \"<RFC 3339 time>\" joined by AND.", f, field)
		}
		if m[1] != field {
			return lo, hi, fmt.Errorf("Invalid filter field %q: this data type supports %q.", m[1], field)
		}
		t, perr := time.Parse(time.RFC3339Nano, m[3])
		if perr != nil {
			return lo, hi, fmt.Errorf("Invalid timestamp %q in filter: expected RFC 3339.", m[3])
		}
		switch m[2] {
		case ">=":
			if lo.IsZero() || t.After(lo) {
				lo = t
			}
		case "<":
			if onlyGE {
				return lo, hi, fmt.Errorf("Invalid filter: only >= is supported on %s.", field)
			}
			if hi.IsZero() || t.Before(hi) {
				hi = t
			}
		}
	}
	return lo, hi, nil
}

// filterTime is the time the data type's filter field compares.
func filterTime(dt string, p *health.DataPoint) (time.Time, error) {
	switch dt {
	case "heart-rate":
		if p.HeartRate != nil && p.HeartRate.SampleTime != nil {
			return time.Parse(time.RFC3339Nano, p.HeartRate.SampleTime.PhysicalTime)
		}
	case "oxygen-saturation":
		if p.OxygenSaturation != nil && p.OxygenSaturation.SampleTime != nil {
			return time.Parse(time.RFC3339Nano, p.OxygenSaturation.SampleTime.PhysicalTime)
		}
	case "steps":
		if p.Steps != nil && p.Steps.Interval != nil {
			return time.Parse(time.RFC3339Nano, p.Steps.Interval.StartTime)
		}
	case "sleep":
		if p.Sleep != nil && p.Sleep.Interval != nil {
			return time.Parse(time.RFC3339Nano, p.Sleep.Interval.EndTime)
		}
	case "electrocardiogram":
		if p.Electrocardiogram != nil && p.Electrocardiogram.Interval != nil {
			return time.Parse(time.RFC3339Nano, p.Electrocardiogram.Interval.StartTime)
		}
	}
	return time.Time{}, fmt.Errorf("data point of %s lacks its %s field or time", dt, dt)
}

// sortTime is the interval or sample start, by which lists are ordered.
func sortTime(dt string, p *health.DataPoint) (time.Time, error) {
	if dt == "sleep" && p.Sleep != nil && p.Sleep.Interval != nil {
		return time.Parse(time.RFC3339Nano, p.Sleep.Interval.StartTime)
	}
	return filterTime(dt, p)
}

type pageToken struct {
	Offset int    `json:"o"`
	Query  string `json:"q"`
}

func encodePageToken(offset int, queryKey string) string {
	sum := sha256.Sum256([]byte(queryKey))
	b, _ := json.Marshal(pageToken{offset, hex.EncodeToString(sum[:8])})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok, queryKey string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	var pt pageToken
	if err := json.Unmarshal(b, &pt); err != nil {
		return 0, err
	}
	sum := sha256.Sum256([]byte(queryKey))
	if pt.Query != hex.EncodeToString(sum[:8]) || pt.Offset < 0 {
		return 0, fmt.Errorf("page token of another query")
	}
	return pt.Offset, nil
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
