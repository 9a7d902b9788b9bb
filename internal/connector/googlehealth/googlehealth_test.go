package googlehealth_test

import (
	"context"
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
	"google.golang.org/api/googleapi"
	health "google.golang.org/api/health/v4"

	"github.com/pulselake/pulselake/internal/connector/googlehealth"
	"github.com/pulselake/pulselake/internal/connector/googlehealth/ghfake"
	"github.com/pulselake/pulselake/internal/reading"
)

const redirectURL = "http://127.0.0.1:8080/v1/connect/google-health/callback"

func newPair(t *testing.T, fo ghfake.Options) (*ghfake.Server, *googlehealth.Provider) {
	t.Helper()
	fake := ghfake.New(fo)
	t.Cleanup(fake.Close)
	p, err := googlehealth.New(googlehealth.Options{
		ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(), RedirectURL: redirectURL,
		APIURL: fake.APIURL(), AuthURL: fake.AuthURL(), TokenURL: fake.TokenURL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

// consent follows the consent URL as a browser would, without following the redirect, and
// returns the query of the redirect to the callback.
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

// connect runs the whole consent flow and returns the token.
func connect(t *testing.T, p *googlehealth.Provider) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := consent(t, p.AuthCodeURL("st-1", verifier))
	tok, err := p.Exchange(t.Context(), q.Get("code"), verifier)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestProviderDescription(t *testing.T) {
	_, p := newPair(t, ghfake.Options{})
	if p.Name() != "google-health" {
		t.Errorf("Name = %q", p.Name())
	}
	want := []string{"heart-rate", "oxygen-saturation", "steps", "sleep", "electrocardiogram"}
	if got := p.DataTypes(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("DataTypes = %v, want %v", got, want)
	}
	if n, perUser := p.RequestsPerMinute(); n != 300 || !perUser {
		t.Errorf("RequestsPerMinute = %d, %v; want 300 per user", n, perUser)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	ok := googlehealth.Options{ClientID: "id", ClientSecret: "secret", RedirectURL: redirectURL}
	for _, tc := range []struct {
		name   string
		change func(*googlehealth.Options)
		want   string // substring of the error; "" for none
	}{
		{"defaults", func(*googlehealth.Options) {}, ""},
		{"no client id", func(o *googlehealth.Options) { o.ClientID = "" }, "client_id is empty"},
		{"no secret", func(o *googlehealth.Options) { o.ClientSecret = "" }, "client_secret_file"},
		{"relative redirect", func(o *googlehealth.Options) { o.RedirectURL = "/callback" }, "redirect_url"},
		{"bad token url", func(o *googlehealth.Options) { o.TokenURL = "ftp://x/token" }, "token_url"},
		{"fitbit api", func(o *googlehealth.Options) { o.APIURL = "https://api.fitbit.com/1/" }, "Fitbit Web API was retired"},
		{"scope with space", func(o *googlehealth.Options) { o.Scopes = []string{"a b"} }, "scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.change(&o)
			_, err := googlehealth.New(o)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestAuthCodeURLAsksForOfflineAccessWithPKCE(t *testing.T) {
	_, p := newPair(t, ghfake.Options{})
	verifier := oauth2.GenerateVerifier()
	u, err := url.Parse(p.AuthCodeURL("state-xyz", verifier))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"state":                 "state-xyz",
		"access_type":           "offline",
		"prompt":                "consent",
		"code_challenge_method": "S256",
		"code_challenge":        oauth2.S256ChallengeFromVerifier(verifier),
		"redirect_uri":          redirectURL,
		"scope":                 strings.Join(googlehealth.DefaultScopes, " "),
	} {
		if got := q.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestExchange(t *testing.T) {
	for _, tc := range []struct {
		name     string
		verifier func(good string) string
		reuse    bool
		wantErr  string
	}{
		{name: "good", verifier: func(v string) string { return v }},
		{name: "wrong verifier", verifier: func(string) string { return oauth2.GenerateVerifier() }, wantErr: "invalid_grant"},
		{name: "code used twice", verifier: func(v string) string { return v }, reuse: true, wantErr: "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, p := newPair(t, ghfake.Options{})
			verifier := oauth2.GenerateVerifier()
			q := consent(t, p.AuthCodeURL("s", verifier))
			if q.Get("state") != "s" || q.Get("code") == "" {
				t.Fatalf("callback query %v lacks the state or code", q)
			}
			if tc.reuse {
				if _, err := p.Exchange(t.Context(), q.Get("code"), verifier); err != nil {
					t.Fatal(err)
				}
			}
			tok, err := p.Exchange(t.Context(), q.Get("code"), tc.verifier(verifier))
			if tc.wantErr != "" {
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.ErrorCode != tc.wantErr {
					t.Fatalf("Exchange error = %v, want a RetrieveError %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
				t.Fatalf("token %+v lacks access token, refresh token or expiry", tok)
			}
			if got := fake.Stats().Exchanges; got != 1 {
				t.Errorf("fake counted %d exchanges, want 1", got)
			}
		})
	}
}

func TestTokenSourceRefreshesAndSurfacesInvalidGrant(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{AccessTokenLifetime: time.Second})
	tok := connect(t, p)
	fake.AddPoints("user-1", "heart-rate", hrPoint(time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC), 61))

	// The access token has expired: the token source refreshes it and the pull works.
	tok.Expiry = time.Now().Add(-time.Minute)
	fake.ExpireAccessTokens()
	ts := p.TokenSource(t.Context(), tok)
	n := pullCount(t, p, oauth2.NewClient(t.Context(), ts), "heart-rate", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC))
	if n != 1 {
		t.Fatalf("pulled %d readings, want 1", n)
	}
	if got := fake.Stats().Refreshes; got != 1 {
		t.Fatalf("fake counted %d refreshes, want 1", got)
	}

	// The user revokes the grant: the next refresh fails with invalid_grant.
	fake.RevokeGrant("user-1")
	tok.Expiry = time.Now().Add(-time.Minute)
	_, err := p.TokenSource(t.Context(), tok).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh after revocation: %v, want a RetrieveError invalid_grant", err)
	}
}

func hrPoint(t time.Time, bpm int64) *health.DataPoint {
	return &health.DataPoint{
		DataSource: &health.DataSource{Device: &health.Device{Manufacturer: "Google", DisplayName: "Pixel Watch 3", FormFactor: "WATCH"}, Platform: "FITBIT", RecordingMethod: "PASSIVELY_MEASURED"},
		HeartRate:  &health.HeartRate{BeatsPerMinute: bpm, SampleTime: &health.ObservationSampleTime{PhysicalTime: t.Format(time.RFC3339Nano), UtcOffset: "3600s"}},
	}
}

// pull pulls and returns the emitted readings as strings, and the number of pages.
func pull(t *testing.T, p *googlehealth.Provider, hc *http.Client, dataType string, start, end time.Time) ([]string, int) {
	t.Helper()
	var out []string
	pages, err := p.Pull(t.Context(), hc, "patient-7", dataType, start, end, func(rs []json.RawMessage) error {
		for _, r := range rs {
			out = append(out, string(r))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Pull %s: %v", dataType, err)
	}
	return out, pages
}

func pullCount(t *testing.T, p *googlehealth.Provider, hc *http.Client, dataType string, start, end time.Time) int {
	rs, _ := pull(t, p, hc, dataType, start, end)
	return len(rs)
}

func client(t *testing.T, p *googlehealth.Provider, tok *oauth2.Token) *http.Client {
	return oauth2.NewClient(t.Context(), p.TokenSource(t.Context(), tok))
}

func TestPullThirtyDaysOfHeartRateAcrossPages(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	tok := connect(t, p)
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	end := start.AddDate(0, 0, 30)
	var pts []*health.DataPoint
	for ts := start; ts.Before(end); ts = ts.Add(time.Minute) {
		pts = append(pts, hrPoint(ts, 50+int64(ts.Minute())))
	}
	// Points just outside the window on both sides.
	pts = append(pts, hrPoint(start.Add(-time.Second), 70), hrPoint(end, 70))
	fake.AddPoints("user-1", "heart-rate", pts...)

	hc := client(t, p, tok)
	got, pages := pull(t, p, hc, "heart-rate", start, end)
	const want = 30 * 24 * 60
	if len(got) != want {
		t.Fatalf("pulled %d readings, want %d", len(got), want)
	}
	if pages != 5 { // 43,200 points at 10,000 a page
		t.Fatalf("read %d pages, want 5", pages)
	}
	ids := map[string]bool{}
	var parser = reading.NewParser(mustRegistry(t))
	parser.Now = func() time.Time { return end }
	for _, s := range got {
		r, errs := parser.Parse([]byte(s))
		if errs != nil {
			t.Fatalf("reading %s does not parse: %v", s, errs)
		}
		if r.Time.Before(start) || !r.Time.Before(end) {
			t.Fatalf("reading at %s outside the window", r.Time)
		}
		ids[r.ID] = true
	}
	if len(ids) != want {
		t.Fatalf("%d distinct ids among %d readings", len(ids), want)
	}
	qs := fake.Queries()
	if len(qs) != 5 {
		t.Fatalf("%d list requests, want 5", len(qs))
	}
	wantFilter := `heart_rate.sample_time.physical_time >= "2026-10-01T00:00:00Z" AND heart_rate.sample_time.physical_time < "2026-10-31T00:00:00Z"`
	for i, q := range qs {
		if q.Get("pageSize") != "10000" || q.Get("filter") != wantFilter {
			t.Fatalf("request %d: pageSize %q filter %q; want 10000 and %s", i, q.Get("pageSize"), q.Get("filter"), wantFilter)
		}
		if (i == 0) != (q.Get("pageToken") == "") {
			t.Fatalf("request %d: pageToken %q", i, q.Get("pageToken"))
		}
	}

	// A re-pull yields the same ids: the lake stores nothing twice.
	again, _ := pull(t, p, hc, "heart-rate", start, end)
	for _, s := range again {
		r, _ := parser.Parse([]byte(s))
		if !ids[r.ID] {
			t.Fatalf("re-pulled reading %s has a new id", s)
		}
	}
}

func mustRegistry(t *testing.T) *reading.Registry {
	reg, err := reading.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestLateSyncedPointIsPickedUpByARepull(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	hc := client(t, p, connect(t, p))
	day := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	fake.AddPoints("user-1", "heart-rate", hrPoint(day.Add(time.Hour), 60))
	first, _ := pull(t, p, hc, "heart-rate", day, day.Add(24*time.Hour))
	// The watch syncs a day later: a point inside the already-pulled window appears.
	fake.AddPoints("user-1", "heart-rate", hrPoint(day.Add(2*time.Hour), 65))
	second, _ := pull(t, p, hc, "heart-rate", day, day.Add(24*time.Hour))
	if len(first) != 1 || len(second) != 2 {
		t.Fatalf("first pull %d readings, second %d; want 1 and 2", len(first), len(second))
	}
	if !strings.Contains(strings.Join(second, "\n"), first[0]) {
		t.Fatalf("the re-pull changed the first reading:\n%s\nnot in\n%s", first[0], strings.Join(second, "\n"))
	}
}

func TestPullMapsEveryDataType(t *testing.T) {
	at := time.Date(2026, 11, 20, 23, 0, 0, 0, time.UTC)
	watch := &health.DataSource{Device: &health.Device{Manufacturer: "Google", DisplayName: "Pixel Watch 3"}, Platform: "FITBIT"}
	iv := func(s, e time.Time) *health.ObservationTimeInterval {
		return &health.ObservationTimeInterval{StartTime: s.Format(time.RFC3339), EndTime: e.Format(time.RFC3339), StartUtcOffset: "3600s", EndUtcOffset: "3600s"}
	}
	siv := func(s, e time.Time) *health.SessionTimeInterval {
		return &health.SessionTimeInterval{StartTime: s.Format(time.RFC3339), EndTime: e.Format(time.RFC3339)}
	}
	stage := func(typ string, s, e time.Time) *health.SleepStage {
		return &health.SleepStage{Type: typ, StartTime: s.Format(time.RFC3339), EndTime: e.Format(time.RFC3339)}
	}
	m := func(d time.Duration) time.Time { return at.Add(d) }
	for _, tc := range []struct {
		dataType string
		points   []*health.DataPoint
		want     []string // readings without their id
	}{
		{"heart-rate", []*health.DataPoint{hrPoint(at, 72)},
			[]string{`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"heart_rate","time":"2026-11-20T23:00:00Z","values":{"bpm":72}}`}},
		{"oxygen-saturation", []*health.DataPoint{{DataSource: &health.DataSource{Platform: "HEALTH_CONNECT"},
			OxygenSaturation: &health.OxygenSaturation{Percentage: 96.5, SampleTime: &health.ObservationSampleTime{PhysicalTime: "2026-11-20T23:00:00.25Z"}}}},
			[]string{`{"subject":"patient-7","device":"health_connect","kind":"spo2","time":"2026-11-20T23:00:00.25Z","values":{"percent":96.5}}`}},
		{"steps", []*health.DataPoint{{DataSource: watch, Steps: &health.Steps{Count: 1234, Interval: iv(at, m(15*time.Minute))}}},
			[]string{`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"steps","time":"2026-11-20T23:00:00Z","values":{"count":1234,"interval_s":900}}`}},
		{"sleep", []*health.DataPoint{{Name: "users/me/dataTypes/sleep/dataPoints/abc", DataSource: watch, Sleep: &health.Sleep{
			Interval: siv(at, m(4*time.Hour)), Type: "STAGES",
			Stages: []*health.SleepStage{
				stage("AWAKE", at, m(10*time.Minute)), stage("LIGHT", m(10*time.Minute), m(70*time.Minute)),
				stage("DEEP", m(70*time.Minute), m(130*time.Minute)), stage("REM", m(130*time.Minute), m(4*time.Hour)),
			}}}},
			[]string{
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-20T23:00:00Z","values":{"duration_s":600,"stage":"wake"}}`,
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-20T23:10:00Z","values":{"duration_s":3600,"stage":"light"}}`,
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-21T00:10:00Z","values":{"duration_s":3600,"stage":"deep"}}`,
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-21T01:10:00Z","values":{"duration_s":6600,"stage":"rem"}}`,
			}},
		{"sleep", []*health.DataPoint{{DataSource: watch, Sleep: &health.Sleep{Interval: siv(at, m(30*time.Minute)), Type: "CLASSIC",
			Stages: []*health.SleepStage{stage("ASLEEP", at, m(20*time.Minute)), stage("RESTLESS", m(20*time.Minute), m(30*time.Minute))}}}},
			[]string{
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-20T23:00:00Z","values":{"duration_s":1200,"stage":"asleep"}}`,
				`{"subject":"patient-7","device":"google-pixel-watch-3","kind":"sleep","time":"2026-11-20T23:20:00Z","values":{"duration_s":600,"stage":"restless"}}`,
			}},
		{"electrocardiogram", []*health.DataPoint{
			{Electrocardiogram: &health.Electrocardiogram{Interval: siv(at, at), SamplingFrequencyHertz: 250, MillivoltsScalingFactor: 1000,
				WaveformSamples: []int64{0, 150, -75, 1200}, LeadNumber: 1, MedicalDeviceInfo: &health.MedicalDeviceInfo{DeviceModel: "Pixel Watch 3"}}},
			// After the window: the API filters ECG on start >= only, the client drops it.
			{Electrocardiogram: &health.Electrocardiogram{Interval: siv(m(48*time.Hour), m(48*time.Hour)), SamplingFrequencyHertz: 250, MillivoltsScalingFactor: 1000, WaveformSamples: []int64{1}}},
		},
			[]string{`{"subject":"patient-7","device":"pixel-watch-3","kind":"ecg","time":"2026-11-20T23:00:00Z","values":{"fs":250,"samples":[0,0.15,-0.075,1.2]}}`}},
	} {
		t.Run(tc.dataType, func(t *testing.T) {
			fake, p := newPair(t, ghfake.Options{})
			hc := client(t, p, connect(t, p))
			fake.AddPoints("user-1", tc.dataType, tc.points...)
			got, _ := pull(t, p, hc, tc.dataType, at.Add(-time.Hour), at.Add(24*time.Hour))
			if len(got) != len(tc.want) {
				t.Fatalf("got %d readings, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			parser := reading.NewParser(mustRegistry(t))
			parser.Now = func() time.Time { return at.Add(72 * time.Hour) }
			seen := map[string]bool{}
			for _, s := range got {
				r, errs := parser.Parse([]byte(s))
				if errs != nil {
					t.Fatalf("reading %s does not validate: %v", s, errs)
				}
				if !strings.HasPrefix(r.ID, "google-health:") || len(r.ID) > reading.MaxIDLen {
					t.Fatalf("id %q", r.ID)
				}
				var m map[string]any
				json.Unmarshal([]byte(s), &m)
				delete(m, "id")
				b, _ := json.Marshal(m)
				seen[string(b)] = true
			}
			for _, w := range tc.want {
				var m map[string]any
				if err := json.Unmarshal([]byte(w), &m); err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(m)
				if !seen[string(b)] {
					t.Errorf("missing reading %s; got:\n%s", w, strings.Join(got, "\n"))
				}
			}
		})
	}
}

func TestSleepAndECGRequests(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	hc := client(t, p, connect(t, p))
	start, end := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 8, 0, 0, 0, 0, time.UTC)
	pull(t, p, hc, "sleep", start, end)
	pull(t, p, hc, "electrocardiogram", start, end)
	qs := fake.Queries()
	if q := qs[0]; q.Get("pageSize") != "25" || q.Get("filter") != `sleep.interval.end_time >= "2026-11-01T00:00:00Z" AND sleep.interval.end_time < "2026-11-08T00:00:00Z"` {
		t.Errorf("sleep request: pageSize %q filter %q", q.Get("pageSize"), q.Get("filter"))
	}
	if q := qs[1]; q.Get("filter") != `electrocardiogram.interval.start_time >= "2026-11-01T00:00:00Z"` {
		t.Errorf("ecg request: filter %q", q.Get("filter"))
	}
}

func TestPullSurfacesRetryableStatus(t *testing.T) {
	for _, tc := range []struct {
		status     int
		retryAfter time.Duration
		wantHeader string
	}{
		{http.StatusTooManyRequests, 7 * time.Second, "7"},
		{http.StatusServiceUnavailable, 0, ""},
		{http.StatusGatewayTimeout, 0, ""},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			fake, p := newPair(t, ghfake.Options{})
			hc := client(t, p, connect(t, p))
			fake.FailNext(1, tc.status, tc.retryAfter)
			_, err := p.Pull(t.Context(), hc, "patient-7", "heart-rate", time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil })
			var ge *googleapi.Error
			if !errors.As(err, &ge) || ge.Code != tc.status {
				t.Fatalf("Pull error = %v, want a *googleapi.Error with code %d", err, tc.status)
			}
			if got := ge.Header.Get("Retry-After"); got != tc.wantHeader {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantHeader)
			}
			// The fault was one request: the next pull works.
			if _, err := p.Pull(t.Context(), hc, "patient-7", "heart-rate", time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil }); err != nil {
				t.Fatalf("pull after the fault: %v", err)
			}
		})
	}
}

func TestPullStopsAtTheFirstEmitError(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	hc := client(t, p, connect(t, p))
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var pts []*health.DataPoint
	for i := range 25000 {
		pts = append(pts, hrPoint(start.Add(time.Duration(i)*time.Second), 60))
	}
	fake.AddPoints("user-1", "heart-rate", pts...)
	boom := errors.New("stream full")
	pages, err := p.Pull(t.Context(), hc, "patient-7", "heart-rate", start, start.Add(24*time.Hour), func([]json.RawMessage) error { return boom })
	if !errors.Is(err, boom) || pages != 1 {
		t.Fatalf("Pull = %d pages, %v; want 1 page and the emit error", pages, err)
	}
	if n := len(fake.Queries()); n != 1 {
		t.Fatalf("%d requests after a failed emit, want 1", n)
	}
}

func TestRetiredFitbitAPI(t *testing.T) {
	fake := ghfake.New(ghfake.Options{})
	defer fake.Close()
	p, err := googlehealth.New(googlehealth.Options{ClientID: "id", ClientSecret: "s", RedirectURL: redirectURL, APIURL: fake.FitbitAPIURL()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Pull(t.Context(), http.DefaultClient, "patient-7", "steps", time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil })
	if !errors.Is(err, googlehealth.ErrFitbitRetired) || !strings.Contains(err.Error(), "connect google-health") {
		t.Fatalf("Pull error = %v, want ErrFitbitRetired saying to connect google-health", err)
	}
}

func TestPullNeedsTheDataTypesScope(t *testing.T) {
	fake := ghfake.New(ghfake.Options{})
	defer fake.Close()
	p, err := googlehealth.New(googlehealth.Options{ClientID: fake.ClientID(), ClientSecret: fake.ClientSecret(), RedirectURL: redirectURL,
		APIURL: fake.APIURL(), AuthURL: fake.AuthURL(), TokenURL: fake.TokenURL(), Scopes: []string{ghfake.ScopeFor("steps")}})
	if err != nil {
		t.Fatal(err)
	}
	hc := client(t, p, connect(t, p))
	_, err = p.Pull(context.Background(), hc, "patient-7", "sleep", time.Now().Add(-time.Hour), time.Now(), func([]json.RawMessage) error { return nil })
	var ge *googleapi.Error
	if !errors.As(err, &ge) || ge.Code != http.StatusForbidden || !strings.Contains(err.Error(), "connect google-health again") {
		t.Fatalf("Pull error = %v, want a 403 with advice", err)
	}
}

func TestConcurrentPullsOfSeveralUsers(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	day := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	users := []string{"user-a", "user-b", "user-c", "user-d"}
	clients := make([]*http.Client, len(users))
	for i, u := range users {
		fake.SetConsentingUser(u)
		clients[i] = client(t, p, connect(t, p))
		for m := range 100 * (i + 1) {
			fake.AddPoints(u, "heart-rate", hrPoint(day.Add(time.Duration(m)*time.Minute), 60))
		}
	}
	counts := make([]int, len(users))
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() {
			_, errs[i] = p.Pull(t.Context(), clients[i], users[i], "heart-rate", day, day.Add(24*time.Hour), func(rs []json.RawMessage) error {
				counts[i] += len(rs)
				return nil
			})
		})
	}
	wg.Wait()
	for i := range users {
		if errs[i] != nil || counts[i] != 100*(i+1) {
			t.Errorf("%s: %d readings, %v; want %d", users[i], counts[i], errs[i], 100*(i+1))
		}
	}
}

func TestRevokeEndsTheGrant(t *testing.T) {
	fake, p := newPair(t, ghfake.Options{})
	tok := connect(t, p)
	if err := p.Revoke(t.Context(), tok); err != nil {
		t.Fatal(err)
	}
	tok.Expiry = time.Now().Add(-time.Minute)
	_, err := p.TokenSource(t.Context(), tok).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("refresh after Revoke: %v, want invalid_grant", err)
	}
	// Revoking again is not an error: the grant is gone either way.
	if err := p.Revoke(t.Context(), tok); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if fake.Stats().Exchanges != 1 {
		t.Fatal("expected one exchange")
	}
}

func TestWindowsPerDataType(t *testing.T) {
	_, p := newPair(t, ghfake.Options{})
	for dt, want := range map[string]time.Duration{
		"heart-rate": 24 * time.Hour, "oxygen-saturation": 7 * 24 * time.Hour, "steps": 7 * 24 * time.Hour,
		"sleep": 30 * 24 * time.Hour, "electrocardiogram": 30 * 24 * time.Hour, "weight": 0,
	} {
		if got := p.Window(dt); got != want {
			t.Errorf("Window(%s) = %s, want %s", dt, got, want)
		}
	}
}
