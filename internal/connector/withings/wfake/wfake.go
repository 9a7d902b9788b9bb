// Package wfake is an in-process fake of the Withings Public API and its OAuth 2.0
// authorization server, for tests of the withings connector. It follows the Withings API
// reference (developer.withings.com/api-reference) field by field: the authorize2 page, the
// OAuth2 – Requesttoken web service, Measure – Getmeas with its paging, and the Withings
// response envelope {"status":N,"body":{...}} (HTTP 200 with a non-zero status on errors,
// plus an "error" string).
//
// # Endpoints
//
//	GET  /oauth2_user/authorize2  authorize (AuthURL). The consenting user (SetConsentingUser,
//	                              default userid "12345678") approves at once: 302 to
//	                              redirect_uri with code and state. Checked: response_type=code,
//	                              client_id, redirect_uri (Options.RedirectURLs when set), state
//	                              (required by Withings), scope (comma separated: user.info,
//	                              user.metrics, user.activity, user.sleepevents). Withings does
//	                              not document PKCE; when code_challenge is sent it must be
//	                              S256 and the token request must carry the matching
//	                              code_verifier. A bad client or redirect URI gets an error
//	                              page (400, no redirect); SetDenyConsent redirects with
//	                              error=access_denied.
//	POST /v2/oauth2               OAuth2 – Requesttoken (TokenURL), form fields action=
//	                              requesttoken, client_id, client_secret, grant_type=
//	                              authorization_code (code valid 30 s, single use; redirect_uri)
//	                              or refresh_token (refresh_token). Answers {"status":0,"body":
//	                              {"userid":"…","access_token","refresh_token","expires_in",
//	                              "scope","csrf_token","token_type":"Bearer"}}. Every refresh
//	                              rotates the refresh token; the previous one stays valid until
//	                              an access token issued after it is used (the documented
//	                              8-hour grace is not timed). Errors: {"status":503,"body":{},
//	                              "error":"Invalid Params: invalid code"} (or "invalid
//	                              refresh_token", "invalid client_id", "invalid
//	                              client_secret", "invalid grant_type", "invalid redirect_uri",
//	                              "invalid code_verifier"); {"status":2554,...} for another action.
//	GET|POST /measure             Measure – Getmeas (action=getmeas; APIURL + "measure").
//	                              Bearer token in Authorization (status 401 "invalid_token"
//	                              otherwise; status 401 "insufficient_scope" without
//	                              user.metrics). meastype (one) or meastypes (comma list):
//	                              groups with at least one such measure, other measures
//	                              dropped; category (1 real, 2 objectives; default 1);
//	                              startdate and enddate (Unix seconds, inclusive, on the
//	                              group's date) or lastupdate (groups modified at or after it);
//	                              offset (from the previous page). Groups newest first, at
//	                              most Options.PageSize a page, "more":1 and "offset" when
//	                              more remain. Body: updatetime, timezone, measuregrps
//	                              (grpid, attrib, date, created, modified, category,
//	                              deviceid, hash_deviceid, measures [{value, type, unit,
//	                              algo, fm}], modelid, model, comment, timezone), more, offset.
//
// # Test controls
//
// AddMeasures seeds measure groups per user; SetConsentingUser, SetDenyConsent;
// RevokeGrant(userid) revokes the user's grants (the next refresh answers status 503
// "Invalid Params: invalid refresh_token", access tokens answer status 401); ExpireAccessTokens.
// FailNext(n, httpStatus, retryAfter) makes the next n Getmeas requests answer that HTTP
// status (429 or 503 or 504) with a Retry-After header when retryAfter > 0;
// FailNextStatus(n, status) makes them answer HTTP 200 with that Withings status (601 is
// "Too Many Request", the documented rate-limit answer). Stats counts requests; Queries
// returns the form of every Getmeas request.
//
// All methods are safe for concurrent use. Close stops the server.
package wfake

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. Zero values take the defaults.
type Options struct {
	ClientID     string // default "withings-test-client"
	ClientSecret string // default "withings-test-secret"
	// RedirectURLs are the registered callback URLs; empty accepts any http(s) URL.
	RedirectURLs []string
	// AccessTokenLifetime is the expires_in of access tokens; default 3h (Withings').
	AccessTokenLifetime time.Duration
	// PageSize is the number of measure groups a Getmeas page holds; default 100.
	PageSize int
	// Timezone is the body's timezone; default "Europe/Paris".
	Timezone string
	Now      func() time.Time // default time.Now
}

// Measure is one measure of a group: its value is Value × 10^Unit.
type Measure struct {
	Value int64 `json:"value"`
	Type  int   `json:"type"`
	Unit  int   `json:"unit"`
	Algo  int   `json:"algo"`
	FM    int   `json:"fm"`
}

// MeasureGroup is a measure group as Getmeas returns it. Zero Created and Modified take Date.
type MeasureGroup struct {
	GrpID        int64     `json:"grpid"`
	Attrib       int       `json:"attrib"`
	Date         int64     `json:"date"`
	Created      int64     `json:"created"`
	Modified     int64     `json:"modified"`
	Category     int       `json:"category"`
	DeviceID     string    `json:"deviceid"`
	HashDeviceID string    `json:"hash_deviceid"`
	Measures     []Measure `json:"measures"`
	ModelID      int       `json:"modelid"`
	Model        string    `json:"model"`
	Comment      *string   `json:"comment"`
	Timezone     string    `json:"timezone,omitempty"`
}

// Measure types of the Withings reference used by the connector.
const (
	TypeDiastolic = 9
	TypeSystolic  = 10
	TypeHeartRate = 11
	TypeSpO2      = 54
)

// Stats counts requests by endpoint.
type Stats struct {
	Authorize  int
	Exchanges  int // authorization_code grants answered with tokens
	Refreshes  int // refresh_token grants answered with tokens
	TokenFails int // token requests answered with a non-zero status
	Getmeas    int // Getmeas requests, faulted ones included
	Faults     int
}

type authCode struct {
	user, redirectURI, challenge string
	scopes                       []string
	expires                      time.Time
}

type grant struct {
	user    string
	scopes  []string
	revoked bool
}

type accessToken struct {
	g       *grant
	expires time.Time
	// retires is the refresh token this access token's issue superseded; using the access
	// token invalidates it.
	retires string
}

type fault struct {
	httpStatus, status int
	retryAfter         time.Duration
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
	groups     map[string][]MeasureGroup
	faults     []fault
	stats      Stats
	queries    []url.Values
}

// New starts a fake on a loopback port.
func New(opts Options) *Server {
	if opts.ClientID == "" {
		opts.ClientID = "withings-test-client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "withings-test-secret"
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = 3 * time.Hour
	}
	if opts.PageSize <= 0 {
		opts.PageSize = 100
	}
	if opts.Timezone == "" {
		opts.Timezone = "Europe/Paris"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:       opts,
		consenting: "12345678",
		codes:      map[string]*authCode{},
		access:     map[string]*accessToken{},
		refresh:    map[string]*grant{},
		groups:     map[string][]MeasureGroup{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /oauth2_user/authorize2", s.authorize)
	mux.HandleFunc("POST /v2/oauth2", s.token)
	mux.HandleFunc("/measure", s.measure)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		envelope(w, 2554, "Wrong action or wrong webservice")
	})
	s.srv = httptest.NewServer(mux)
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the base URL without a trailing slash.
func (s *Server) URL() string { return s.srv.URL }

// AuthURL is the authorize page (connectors.withings.auth_url).
func (s *Server) AuthURL() string { return s.srv.URL + "/oauth2_user/authorize2" }

// APIURL is the API base URL (connectors.withings.api_url), with a trailing slash; the token
// endpoint is APIURL + "v2/oauth2".
func (s *Server) APIURL() string { return s.srv.URL + "/" }

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.srv.URL + "/v2/oauth2" }

// ClientID and ClientSecret are the registered application's credentials.
func (s *Server) ClientID() string     { return s.opts.ClientID }
func (s *Server) ClientSecret() string { return s.opts.ClientSecret }

// SetConsentingUser sets the userid of the user who consents at the next authorize requests.
func (s *Server) SetConsentingUser(userid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.consenting = userid
}

// SetDenyConsent makes the user refuse consent.
func (s *Server) SetDenyConsent(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny = deny
}

// AddMeasures seeds measure groups for a user. Zero Created/Modified take Date, zero Category
// is 1 (real measures).
func (s *Server) AddMeasures(userid string, groups ...MeasureGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range groups {
		if g.Created == 0 {
			g.Created = g.Date
		}
		if g.Modified == 0 {
			g.Modified = g.Created
		}
		if g.Category == 0 {
			g.Category = 1
		}
		g.Measures = slices.Clone(g.Measures)
		s.groups[userid] = append(s.groups[userid], g)
	}
	slices.SortStableFunc(s.groups[userid], func(a, b MeasureGroup) int { // newest first
		if a.Date != b.Date {
			return cmp.Compare(b.Date, a.Date)
		}
		return cmp.Compare(b.GrpID, a.GrpID)
	})
}

// RevokeGrant revokes every grant of the user, as when the user unlinks the application.
func (s *Server) RevokeGrant(userid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.refresh {
		if g.user == userid {
			g.revoked = true
		}
	}
	for _, a := range s.access {
		if a.g.user == userid {
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

// FailNext makes the next n Getmeas requests answer httpStatus (429, 503, 504, ...) with a
// Retry-After header in whole seconds when retryAfter > 0.
func (s *Server) FailNext(n, httpStatus int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{httpStatus: httpStatus, retryAfter: retryAfter})
	}
}

// FailNextStatus makes the next n Getmeas requests answer HTTP 200 with the Withings status
// (601: "Too Many Request"; 2555: "An unknown error occurred").
func (s *Server) FailNextStatus(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{httpStatus: http.StatusOK, status: status})
	}
}

// Stats returns the request counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Queries returns the parameters of every Getmeas request, in order.
func (s *Server) Queries() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

var knownScopes = []string{"user.info", "user.metrics", "user.activity", "user.sleepevents"}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Authorize++
	if q.Get("client_id") != s.opts.ClientID {
		errorPage(w, "Invalid client_id")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(len(s.opts.RedirectURLs) > 0 && !slices.Contains(s.opts.RedirectURLs, redirect)) {
		errorPage(w, "Invalid redirect_uri: it must match a callback URL of the application")
		return
	}
	if q.Get("response_type") != "code" {
		errorPage(w, "Invalid response_type: expected code")
		return
	}
	if q.Get("state") == "" {
		errorPage(w, "Missing state")
		return
	}
	scopes := strings.Split(q.Get("scope"), ",")
	for _, sc := range scopes {
		if !slices.Contains(knownScopes, strings.TrimSpace(sc)) {
			errorPage(w, "Invalid scope "+strconv.Quote(sc))
			return
		}
	}
	challenge := q.Get("code_challenge")
	if challenge != "" && q.Get("code_challenge_method") != "S256" {
		errorPage(w, "Invalid code_challenge_method: expected S256")
		return
	}
	v := u.Query()
	v.Set("state", q.Get("state"))
	if s.deny {
		v.Set("error", "access_denied")
	} else {
		code := randomHex(20)
		s.codes[code] = &authCode{user: s.consenting, redirectURI: redirect, challenge: challenge,
			scopes: scopes, expires: s.opts.Now().Add(30 * time.Second)}
		v.Set("code", code)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func errorPage(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "<html><body><h1>Withings</h1><p>%s</p></body></html>", msg)
}

// envelope writes a Withings error answer: HTTP 200, non-zero status, empty body.
func envelope(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, http.StatusOK, map[string]any{"status": status, "body": map[string]any{}, "error": msg})
}

func writeJSON(w http.ResponseWriter, httpStatus int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	json.NewEncoder(w).Encode(v)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		envelope(w, 503, "Invalid Params: could not parse the body")
		return
	}
	f := r.PostForm
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(msg string) {
		s.stats.TokenFails++
		envelope(w, 503, "Invalid Params: "+msg)
	}
	if f.Get("action") != "requesttoken" {
		s.stats.TokenFails++
		envelope(w, 2554, "Wrong action or wrong webservice")
		return
	}
	if f.Get("client_id") != s.opts.ClientID {
		fail("invalid client_id")
		return
	}
	if f.Get("client_secret") != s.opts.ClientSecret {
		fail("invalid client_secret")
		return
	}
	now := s.opts.Now()
	switch f.Get("grant_type") {
	case "authorization_code":
		c, ok := s.codes[f.Get("code")]
		if !ok || now.After(c.expires) {
			fail("invalid code")
			return
		}
		delete(s.codes, f.Get("code"))
		if f.Get("redirect_uri") != c.redirectURI {
			fail("invalid redirect_uri")
			return
		}
		if c.challenge != "" {
			sum := sha256.Sum256([]byte(f.Get("code_verifier")))
			if f.Get("code_verifier") == "" || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
				fail("invalid code_verifier")
				return
			}
		}
		s.stats.Exchanges++
		s.issue(w, &grant{user: c.user, scopes: c.scopes}, "", now)
	case "refresh_token":
		old := f.Get("refresh_token")
		g, ok := s.refresh[old]
		if !ok || g.revoked {
			fail("invalid refresh_token")
			return
		}
		s.stats.Refreshes++
		s.issue(w, g, old, now)
	default:
		fail("invalid grant_type")
	}
}

// issue answers a new access and refresh token for g; s.mu is held.
func (s *Server) issue(w http.ResponseWriter, g *grant, retires string, now time.Time) {
	at, rt := randomHex(20), randomHex(20)
	s.access[at] = &accessToken{g: g, expires: now.Add(s.opts.AccessTokenLifetime), retires: retires}
	s.refresh[rt] = g
	writeJSON(w, http.StatusOK, map[string]any{"status": 0, "body": map[string]any{
		"userid":        g.user,
		"access_token":  at,
		"refresh_token": rt,
		"expires_in":    int(s.opts.AccessTokenLifetime / time.Second),
		"scope":         strings.Join(g.scopes, ","),
		"csrf_token":    randomHex(16),
		"token_type":    "Bearer",
	}})
}

// measure serves Measure - Getmeas: the next queued fault if any, else the user's measure
// groups that match the query, one page at a time.
func (s *Server) measure(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		envelope(w, 503, "Invalid Params: could not parse the body")
		return
	}
	f := r.Form
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Getmeas++
	s.queries = append(s.queries, f)
	if s.writeFault(w) {
		return
	}
	if f.Get("action") != "getmeas" {
		envelope(w, 2554, "Wrong action or wrong webservice")
		return
	}
	a := s.bearer(w, r, "user.metrics")
	if a == nil {
		return
	}
	q, err := parseMeasureQuery(f)
	if err != nil {
		envelope(w, 503, "Invalid Params")
		return
	}
	matched := s.matchGroups(a.g.user, q)
	body := map[string]any{
		"updatetime":  s.opts.Now().Unix(),
		"timezone":    s.opts.Timezone,
		"measuregrps": []MeasureGroup{},
		"more":        0,
		"offset":      0,
	}
	if q.offset < int64(len(matched)) {
		next := min(int(q.offset)+s.opts.PageSize, len(matched))
		body["measuregrps"] = matched[q.offset:next]
		if next < len(matched) {
			body["more"] = 1
			body["offset"] = next
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": 0, "body": body})
}

// writeFault answers with the next queued fault, if any, and reports whether it did: an HTTP
// error page, or a Withings status in an HTTP 200 envelope. The caller holds s.mu.
func (s *Server) writeFault(w http.ResponseWriter) bool {
	if len(s.faults) == 0 {
		return false
	}
	ft := s.faults[0]
	s.faults = s.faults[1:]
	s.stats.Faults++
	if ft.httpStatus != http.StatusOK {
		if ft.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((ft.retryAfter+time.Second-1)/time.Second)))
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(ft.httpStatus)
		fmt.Fprintf(w, "<html><body>%d %s</body></html>", ft.httpStatus, http.StatusText(ft.httpStatus))
		return true
	}
	msg := "An unknown error occurred"
	if ft.status == 601 {
		msg = "Too Many Request"
	}
	envelope(w, ft.status, msg)
	return true
}

// bearer returns the live access token of r's bearer header when its grant has scope, or
// answers status 401 and returns nil. Using a refreshed token retires the refresh token it
// replaced. The caller holds s.mu.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request, scope string) *accessToken {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	a := s.access[tok]
	if !ok || a == nil || a.g.revoked || !s.opts.Now().Before(a.expires) {
		envelope(w, 401, "XRequestID: Not provided invalid_token: The access token provided is invalid")
		return nil
	}
	if a.retires != "" {
		delete(s.refresh, a.retires)
		a.retires = ""
	}
	if !slices.Contains(a.g.scopes, scope) {
		envelope(w, 401, "XRequestID: Not provided insufficient_scope: The request requires higher privileges than provided by the access token")
		return nil
	}
	return a
}

// measureQuery is the filter of a getmeas request; -1 is an absent date.
type measureQuery struct {
	types                                    []int
	category, start, end, lastupdate, offset int64
}

// parseMeasureQuery reads meastype(s), category, startdate/enddate (both or neither),
// lastupdate and offset from f.
func parseMeasureQuery(f url.Values) (measureQuery, error) {
	q := measureQuery{category: 1, start: -1, end: -1, lastupdate: -1}
	types, err := intList(f.Get("meastypes"))
	if err == nil && f.Get("meastype") != "" {
		var t []int
		t, err = intList(f.Get("meastype"))
		types = append(types, t...)
	}
	q.types = types
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"category", &q.category}, {"startdate", &q.start}, {"enddate", &q.end}, {"lastupdate", &q.lastupdate}, {"offset", &q.offset}} {
		if err != nil {
			break
		}
		if v := f.Get(p.name); v != "" {
			*p.dst, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				err = fmt.Errorf("invalid %s", p.name)
			}
		}
	}
	if err == nil && (q.start >= 0) != (q.end >= 0) {
		err = fmt.Errorf("startdate and enddate go together")
	}
	if err == nil && q.offset < 0 {
		err = fmt.Errorf("negative offset")
	}
	return q, err
}

// matchGroups returns user's measure groups that pass q, newest first, each holding only the
// measures of q's types. The caller holds s.mu.
func (s *Server) matchGroups(user string, q measureQuery) []MeasureGroup {
	var matched []MeasureGroup
	for _, g := range s.groups[user] { // kept newest first by AddMeasures
		if int64(g.Category) != q.category ||
			(q.start >= 0 && (g.Date < q.start || g.Date > q.end)) ||
			(q.lastupdate >= 0 && g.Modified < q.lastupdate) {
			continue
		}
		if len(q.types) > 0 {
			g.Measures = slices.DeleteFunc(slices.Clone(g.Measures), func(m Measure) bool { return !slices.Contains(q.types, m.Type) })
			if len(g.Measures) == 0 {
				continue
			}
		}
		if g.Timezone == "" {
			g.Timezone = s.opts.Timezone
		}
		matched = append(matched, g)
	}
	return matched
}

func intList(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("invalid meastypes")
		}
		out = append(out, n)
	}
	return out, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
