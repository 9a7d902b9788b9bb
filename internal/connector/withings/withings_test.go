package withings_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pulselake/pulselake/internal/connector/withings"
	"github.com/pulselake/pulselake/internal/connector/withings/wfake"
	"github.com/pulselake/pulselake/internal/reading"
)

const redirectURL = "https://pulselake.example.org/v1/connect/withings/callback"

func newPair(t *testing.T, fo wfake.Options) (*wfake.Server, *withings.Provider) {
	t.Helper()
	fake := wfake.New(fo)
	t.Cleanup(fake.Close)
	p, err := withings.New(withings.Options{ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(),
		RedirectURL: redirectURL, APIURL: fake.APIURL(), AuthURL: fake.AuthURL()})
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

func consent(t *testing.T, authURL string) url.Values {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize answered %s, want 302", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURL {
		t.Fatalf("redirected to %s, want %s", got, redirectURL)
	}
	return loc.Query()
}

func connect(t *testing.T, p *withings.Provider) *oauth2.Token {
	t.Helper()
	v := oauth2.GenerateVerifier()
	q := consent(t, p.AuthCodeURL("st", v))
	tok, err := p.Exchange(t.Context(), q.Get("code"), v)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func client(t *testing.T, p *withings.Provider, tok *oauth2.Token) *http.Client {
	return oauth2.NewClient(t.Context(), p.TokenSource(t.Context(), tok))
}

func pull(t *testing.T, p *withings.Provider, hc *http.Client, start, end time.Time) ([]string, int) {
	t.Helper()
	var out []string
	pages, err := p.Pull(t.Context(), hc, "patient-9", withings.Measures, start, end, func(rs []json.RawMessage) error {
		for _, r := range rs {
			out = append(out, string(r))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	return out, pages
}

func TestProviderDescription(t *testing.T) {
	_, p := newPair(t, wfake.Options{})
	if p.Name() != "withings" || fmt.Sprint(p.DataTypes()) != "[measures]" {
		t.Errorf("Name %q DataTypes %v", p.Name(), p.DataTypes())
	}
	if n, perUser := p.RequestsPerMinute(); n != 120 || perUser {
		t.Errorf("RequestsPerMinute = %d, %v; want 120 per application", n, perUser)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	ok := withings.Options{ClientID: "id", ClientSecret: "secret", RedirectURL: redirectURL}
	for _, tc := range []struct {
		name   string
		change func(*withings.Options)
		want   string
	}{
		{"defaults", func(*withings.Options) {}, ""},
		{"no client id", func(o *withings.Options) { o.ClientID = "" }, "client_id is empty"},
		{"no secret", func(o *withings.Options) { o.ClientSecret = "" }, "client_secret_file"},
		{"no redirect", func(o *withings.Options) { o.RedirectURL = "" }, "redirect_url"},
		{"bad api url", func(o *withings.Options) { o.APIURL = "wbsapi.withings.net" }, "api_url"},
		{"comma in scope", func(o *withings.Options) { o.Scopes = []string{"user.metrics,user.info"} }, "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			_, err := withings.New(o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestAuthCodeURL(t *testing.T) {
	p, err := withings.New(withings.Options{ClientID: "cid", ClientSecret: "s", RedirectURL: redirectURL, Scopes: []string{"user.info", "user.metrics"}})
	if err != nil {
		t.Fatal(err)
	}
	v := oauth2.GenerateVerifier()
	u, err := url.Parse(p.AuthCodeURL("st-9", v))
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != "account.withings.com" || u.Path != "/oauth2_user/authorize2" {
		t.Errorf("consent page %s", u)
	}
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "cid", "scope": "user.info,user.metrics", "redirect_uri": redirectURL,
		"state": "st-9", "code_challenge": oauth2.S256ChallengeFromVerifier(v), "code_challenge_method": "S256",
	} {
		if got := u.Query().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name     string
		verifier func(string) string
		reuse    bool
		wantErr  bool
	}{
		{name: "good", verifier: func(v string) string { return v }},
		{name: "wrong verifier", verifier: func(string) string { return oauth2.GenerateVerifier() }, wantErr: true},
		{name: "code used twice", verifier: func(v string) string { return v }, reuse: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, p := newPair(t, wfake.Options{})
			fake.SetConsentingUser("777")
			v := oauth2.GenerateVerifier()
			q := consent(t, p.AuthCodeURL("st", v))
			if q.Get("state") != "st" || q.Get("code") == "" {
				t.Fatalf("callback query %v", q)
			}
			if tc.reuse {
				if _, err := p.Exchange(t.Context(), q.Get("code"), v); err != nil {
					t.Fatal(err)
				}
			}
			tok, err := p.Exchange(t.Context(), q.Get("code"), tc.verifier(v))
			if tc.wantErr {
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
					t.Fatalf("Exchange error = %v, want invalid_grant", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" ||
				time.Until(tok.Expiry) < 2*time.Hour || tok.Extra("userid") != "777" || tok.Extra("scope") != "user.metrics" {
				t.Fatalf("token %+v userid %v scope %v", tok, tok.Extra("userid"), tok.Extra("scope"))
			}
		})
	}
}

func TestTokenSourceRotatesAndSurfacesInvalidGrant(t *testing.T) {
	fake, p := newPair(t, wfake.Options{})
	tok := connect(t, p)
	day := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
	fake.AddMeasures("12345678", bp(1, day.Add(8*time.Hour), 128, 84, 70))

	// Expired access token: the source refreshes, Withings rotates the refresh token.
	tok.Expiry = time.Now().Add(-time.Minute)
	fake.ExpireAccessTokens()
	ts := p.TokenSource(t.Context(), tok)
	rs, _ := pull(t, p, oauth2.NewClient(t.Context(), ts), day, day.Add(24*time.Hour))
	if len(rs) != 1 {
		t.Fatalf("pulled %d readings, want 1", len(rs))
	}
	nt, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if nt.RefreshToken == tok.RefreshToken || nt.RefreshToken == "" || fake.Stats().Refreshes != 1 {
		t.Fatalf("refresh token not rotated (old %q new %q, %d refreshes)", tok.RefreshToken, nt.RefreshToken, fake.Stats().Refreshes)
	}
	// The new access token was used: the old refresh token is dead.
	old := *tok
	_, err = p.TokenSource(t.Context(), &old).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh with the superseded token: %v, want invalid_grant", err)
	}

	// The user unlinks the application: the current refresh token is refused too.
	fake.RevokeGrant("12345678")
	nt.Expiry = time.Now().Add(-time.Minute)
	_, err = p.TokenSource(t.Context(), nt).Token()
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || !strings.Contains(re.ErrorDescription, "invalid refresh_token") {
		t.Fatalf("refresh after revocation: %v, want invalid_grant", err)
	}
	// And the API refuses the access token with status 401.
	_, err = p.Pull(t.Context(), oauth2.NewClient(t.Context(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: nt.AccessToken})),
		"patient-9", withings.Measures, day, day.Add(time.Hour), func([]json.RawMessage) error { return nil })
	var ae *withings.APIError
	if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("pull with a revoked access token: %v, want APIError 401", err)
	}
}

func bp(id int64, at time.Time, sys, dia, pulse int64) wfake.MeasureGroup {
	ms := []wfake.Measure{{Value: dia, Type: wfake.TypeDiastolic, FM: 3}, {Value: sys, Type: wfake.TypeSystolic, FM: 3}}
	if pulse > 0 {
		ms = append(ms, wfake.Measure{Value: pulse, Type: wfake.TypeHeartRate, FM: 3})
	}
	return wfake.MeasureGroup{GrpID: id, Date: at.Unix(), DeviceID: "c405eb8e0e053f6601e151c7e43c04e29aad6956",
		HashDeviceID: "c405eb8e0e053f6601e151c7e43c04e29aad6956", Model: "BPM Core", ModelID: 44, Measures: ms}
}

func TestPullThirtyDaysAcrossPages(t *testing.T) {
	fake, p := newPair(t, wfake.Options{PageSize: 1000})
	hc := client(t, p, connect(t, p))
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 0, 30)
	var gs []wfake.MeasureGroup
	id := int64(1000)
	for ts := start; ts.Before(end); ts = ts.Add(time.Minute) {
		id++
		gs = append(gs, wfake.MeasureGroup{GrpID: id, Date: ts.Unix(), HashDeviceID: "aa11bb22cc33", Model: "ScanWatch 2",
			Measures: []wfake.Measure{{Value: 60 + int64(ts.Minute()%30), Type: wfake.TypeHeartRate}}})
	}
	gs = append(gs, bp(1, start.Add(-time.Second), 120, 80, 0), bp(2, end, 120, 80, 0)) // just outside
	fake.AddMeasures("12345678", gs...)

	got, pages := pull(t, p, hc, start, end)
	const want = 30 * 24 * 60
	if len(got) != want || pages != 44 {
		t.Fatalf("pulled %d readings in %d pages, want %d in 44", len(got), pages, want)
	}
	parser := reading.NewParser(registry(t))
	parser.Now = func() time.Time { return end }
	ids := map[string]bool{}
	for _, s := range got {
		r, errs := parser.Parse([]byte(s))
		if errs != nil {
			t.Fatalf("%s: %v", s, errs)
		}
		ids[r.ID] = true
	}
	if len(ids) != want {
		t.Fatalf("%d distinct ids for %d readings", len(ids), want)
	}
	qs := fake.Queries()
	for i, q := range qs {
		if q.Get("action") != "getmeas" || q.Get("meastypes") != "9,10,11,54" || q.Get("category") != "1" ||
			q.Get("startdate") != fmt.Sprint(start.Unix()) || q.Get("enddate") != fmt.Sprint(end.Unix()) ||
			(i == 0) != (q.Get("offset") == "") {
			t.Fatalf("request %d: %v", i, q)
		}
	}
}

func registry(t *testing.T) *reading.Registry {
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestPullMapsEveryMeasure(t *testing.T) {
	at := time.Date(2026, 11, 20, 7, 30, 0, 0, time.UTC)
	comment := "after coffee"
	for _, tc := range []struct {
		name  string
		group wfake.MeasureGroup
		want  []string // readings without their id; none when the group is skipped
	}{
		{"blood pressure with pulse", bp(1, at, 142, 91, 72),
			[]string{`{"subject":"patient-9","device":"withings-bpm-core-c405eb8e","kind":"blood_pressure","time":"2026-11-20T07:30:00Z","values":{"diastolic":91,"pulse":72,"systolic":142}}`}},
		{"blood pressure without pulse", bp(2, at, 118, 76, 0),
			[]string{`{"subject":"patient-9","device":"withings-bpm-core-c405eb8e","kind":"blood_pressure","time":"2026-11-20T07:30:00Z","values":{"diastolic":76,"systolic":118}}`}},
		{"heart pulse alone", wfake.MeasureGroup{GrpID: 3, Date: at.Unix(), HashDeviceID: "0123456789abcdef", Model: "ScanWatch 2",
			Measures: []wfake.Measure{{Value: 58, Type: wfake.TypeHeartRate}}},
			[]string{`{"subject":"patient-9","device":"withings-scanwatch-2-01234567","kind":"heart_rate","time":"2026-11-20T07:30:00Z","values":{"bpm":58}}`}},
		{"spo2 with a unit", wfake.MeasureGroup{GrpID: 4, Date: at.Unix(), HashDeviceID: "0123456789abcdef", Model: "ScanWatch 2",
			Measures: []wfake.Measure{{Value: 9650, Type: wfake.TypeSpO2, Unit: -2}}},
			[]string{`{"subject":"patient-9","device":"withings-scanwatch-2-01234567","kind":"spo2","time":"2026-11-20T07:30:00Z","values":{"percent":96.5}}`}},
		{"blood pressure and spo2 in one group", func() wfake.MeasureGroup {
			g := bp(5, at, 130, 85, 66)
			g.Measures = append(g.Measures, wfake.Measure{Value: 97, Type: wfake.TypeSpO2})
			return g
		}(), []string{
			`{"subject":"patient-9","device":"withings-bpm-core-c405eb8e","kind":"blood_pressure","time":"2026-11-20T07:30:00Z","values":{"diastolic":85,"pulse":66,"systolic":130}}`,
			`{"subject":"patient-9","device":"withings-bpm-core-c405eb8e","kind":"spo2","time":"2026-11-20T07:30:00Z","values":{"percent":97}}`,
		}},
		{"typed in by the user", wfake.MeasureGroup{GrpID: 6, Date: at.Unix(), Attrib: 2, Comment: &comment,
			Measures: []wfake.Measure{{Value: 1350, Type: wfake.TypeSystolic, Unit: -1}, {Value: 880, Type: wfake.TypeDiastolic, Unit: -1}}},
			[]string{`{"subject":"patient-9","device":"withings-manual","kind":"blood_pressure","time":"2026-11-20T07:30:00Z","values":{"diastolic":88,"systolic":135}}`}},
		{"ambiguous attribution", func() wfake.MeasureGroup { g := bp(7, at, 150, 95, 80); g.Attrib = 1; return g }(), nil},
		{"systolic alone", wfake.MeasureGroup{GrpID: 8, Date: at.Unix(), Measures: []wfake.Measure{{Value: 140, Type: wfake.TypeSystolic}}}, nil},
		{"objective, not a measure", func() wfake.MeasureGroup { g := bp(9, at, 120, 80, 0); g.Category = 2; return g }(), nil},
		{"at the window's end", bp(10, at.Add(24*time.Hour), 120, 80, 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, p := newPair(t, wfake.Options{})
			hc := client(t, p, connect(t, p))
			fake.AddMeasures("12345678", tc.group)
			got, _ := pull(t, p, hc, at.Add(-time.Hour), at.Add(24*time.Hour))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d readings, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			parser := reading.NewParser(registry(t))
			parser.Now = func() time.Time { return at.Add(48 * time.Hour) }
			for i, s := range got {
				r, errs := parser.Parse([]byte(s))
				if errs != nil {
					t.Fatalf("%s does not validate: %v", s, errs)
				}
				if !strings.HasPrefix(r.ID, "withings:") {
					t.Fatalf("id %q", r.ID)
				}
				var m map[string]any
				json.Unmarshal([]byte(s), &m)
				delete(m, "id")
				gotNoID, _ := json.Marshal(m)
				var w map[string]any
				json.Unmarshal([]byte(tc.want[i]), &w)
				wantJSON, _ := json.Marshal(w)
				if string(gotNoID) != string(wantJSON) {
					t.Errorf("reading %d:\n got %s\nwant %s", i, gotNoID, wantJSON)
				}
			}
		})
	}
}

func TestLateMeasureIsPickedUpByARepull(t *testing.T) {
	fake, p := newPair(t, wfake.Options{})
	hc := client(t, p, connect(t, p))
	day := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	fake.AddMeasures("12345678", bp(1, day.Add(8*time.Hour), 125, 82, 70))
	first, _ := pull(t, p, hc, day, day.Add(24*time.Hour))
	// The cuff syncs two days later a measure taken that evening.
	fake.AddMeasures("12345678", wfake.MeasureGroup{GrpID: 2, Date: day.Add(20 * time.Hour).Unix(), Created: day.Add(68 * time.Hour).Unix(),
		HashDeviceID: "c405eb8e", Model: "BPM Core", Measures: []wfake.Measure{{Value: 131, Type: 10}, {Value: 86, Type: 9}}})
	second, _ := pull(t, p, hc, day, day.Add(24*time.Hour))
	if len(first) != 1 || len(second) != 2 || !strings.Contains(strings.Join(second, "\n"), first[0]) {
		t.Fatalf("first pull %v, second %v", first, second)
	}
}

func TestPullSurfacesRetryableAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*wfake.Server)
		check  func(t *testing.T, err error)
	}{
		{"429 with Retry-After", func(f *wfake.Server) { f.FailNext(1, 429, 30*time.Second) }, func(t *testing.T, err error) {
			var he *withings.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 429 || http.Header(he.Header).Get("Retry-After") != "30" {
				t.Fatalf("error %v, want HTTPError 429 with Retry-After 30", err)
			}
		}},
		{"503", func(f *wfake.Server) { f.FailNext(1, 503, 0) }, func(t *testing.T, err error) {
			var he *withings.HTTPError
			if !errors.As(err, &he) || he.StatusCode != 503 {
				t.Fatalf("error %v, want HTTPError 503", err)
			}
		}},
		{"status 601", func(f *wfake.Server) { f.FailNextStatus(1, 601) }, func(t *testing.T, err error) {
			var ae *withings.APIError
			if !errors.As(err, &ae) || ae.Status != 601 || !ae.Temporary() {
				t.Fatalf("error %v, want a temporary APIError 601", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, p := newPair(t, wfake.Options{})
			hc := client(t, p, connect(t, p))
			tc.inject(fake)
			_, err := p.Pull(t.Context(), hc, "patient-9", withings.Measures, time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil })
			tc.check(t, err)
			if _, err := p.Pull(t.Context(), hc, "patient-9", withings.Measures, time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil }); err != nil {
				t.Fatalf("pull after the fault: %v", err)
			}
		})
	}
}

func TestConcurrentPullsOfSeveralUsers(t *testing.T) {
	fake, p := newPair(t, wfake.Options{PageSize: 10})
	day := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	users := []string{"101", "102", "103", "104"}
	clients := make([]*http.Client, len(users))
	for i, u := range users {
		fake.SetConsentingUser(u)
		clients[i] = client(t, p, connect(t, p))
		for m := range 30 * (i + 1) {
			fake.AddMeasures(u, bp(int64(1000*i+m), day.Add(time.Duration(m)*time.Minute), 120, 80, 60))
		}
	}
	counts := make([]int, len(users))
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			_, errs[i] = p.Pull(t.Context(), clients[i], "subject-"+users[i], withings.Measures, day, day.Add(24*time.Hour), func(rs []json.RawMessage) error {
				counts[i] += len(rs)
				return nil
			})
		})
	}
	wg.Wait()
	for i := range users {
		if errs[i] != nil || counts[i] != 30*(i+1) {
			t.Errorf("user %s: %d readings, %v; want %d", users[i], counts[i], errs[i], 30*(i+1))
		}
	}
}
