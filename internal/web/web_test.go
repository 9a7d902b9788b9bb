package web

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/httpapi"
	"github.com/pulselake/pulselake/internal/token"
)

const (
	readSecret  = "plk_read-token-0123456789"
	boundSecret = "plk_bound-read-token-0123456789"
)

func testServer(t *testing.T) *Server {
	t.Helper()
	verify := func(secret string) (token.Token, error) {
		switch secret {
		case readSecret:
			return token.Token{ID: "r", Scope: token.ScopeRead}, nil
		case boundSecret:
			return token.Token{ID: "b", Scope: token.ScopeRead, Subject: "patient-1"}, nil
		}
		return token.Token{}, token.ErrInvalid
	}
	reg := prometheus.NewRegistry()
	s := New(slog.New(slog.NewTextHandler(io.Discard, nil)), reg, Options{Verify: verify, Gatherer: reg})
	ok := func(w http.ResponseWriter, _ *http.Request, tok token.Token) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"token": tok.ID})
	}
	s.Handle("GET /open", token.ScopeRead, ok)
	s.HandleUnbound("GET /unbound", token.ScopeRead, ok)
	s.Handle("GET /admin", token.ScopeAdmin, ok)
	return s
}

func TestHandleAuthentication(t *testing.T) {
	s := testServer(t)
	for _, c := range []struct {
		name, path, auth string
		code             int
		errCode          string
	}{
		{"canonical scheme", "/open", "Bearer " + readSecret, 200, ""},
		{"lower-case scheme", "/open", "bearer " + readSecret, 200, ""},
		{"upper-case scheme", "/open", "BEARER " + readSecret, 200, ""},
		{"several spaces", "/open", "Bearer   " + readSecret + " ", 200, ""},
		{"no header", "/open", "", 401, "unauthenticated"},
		{"other scheme", "/open", "Basic " + readSecret, 401, "unauthenticated"},
		{"scheme without token", "/open", "Bearer ", 401, "unauthenticated"},
		{"scheme glued to token", "/open", "Bearer" + readSecret, 401, "unauthenticated"},
		{"two words", "/open", "Bearer " + readSecret + " x", 401, "unauthenticated"},
		{"unknown token", "/open", "Bearer plk_nope", 401, "unauthenticated"},
		{"scope too small", "/admin", "Bearer " + readSecret, 403, "forbidden"},
		{"bound token on a filtered path", "/open", "Bearer " + boundSecret, 200, ""},
		{"bound token on an unfilterable path", "/unbound", "bearer " + boundSecret, 403, "subject-bound-token"},
		{"unbound token on an unfilterable path", "/unbound", "Bearer " + readSecret, 200, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			rec := httptest.NewRecorder()
			s.mux.ServeHTTP(rec, req)
			if rec.Code != c.code {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.code, rec.Body)
			}
			if c.errCode == "" {
				return
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != c.errCode || body.Error.Message == "" {
				t.Fatalf("error body %s, want code %s", rec.Body, c.errCode)
			}
			if c.code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer abc", "BeArEr  abc  ", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "", " Bearer abc", "Bearer\tabc"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := BearerToken(h)
		if !ok {
			if tok != "" {
				t.Fatalf("refused header %q returned token %q", h, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			t.Fatalf("header %q gave token %q", h, tok)
		}
		if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
			t.Fatalf("header %q without the Bearer scheme accepted", h)
		}
		// The token is what follows the scheme, surrounding blanks removed.
		if strings.Trim(h[7:], " \t") != tok {
			t.Fatalf("header %q gave token %q", h, tok)
		}
	})
}

func TestHubFiltersBySubject(t *testing.T) {
	h := NewHub(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry(), nil, nil)
	all := h.subscribe(token.Token{Scope: token.ScopeRead}, "")
	bound := h.subscribe(token.Token{Scope: token.ScopeRead, Subject: "patient-1"}, "")
	// An unbound token that asks for one subject (the patient view) gets what a token bound
	// to it gets.
	picked := h.subscribe(token.Token{Scope: token.ScopeRead}, "patient-1")
	defer h.unsubscribe(all)
	defer h.unsubscribe(bound)
	defer h.unsubscribe(picked)

	h.Publish(Event{Type: "alert", Subject: "patient-2", Data: "other's alert"})
	h.Publish(Event{Type: "alert", Subject: "patient-1", Data: "own alert"})
	h.Publish(Event{Type: "anomaly", Data: "nobody's"})
	// The bound subscriber's sampling budget is not spent on other subjects' readings.
	for i := 0; i < 2*MaxReadingsPerSecond; i++ {
		h.deliver(Event{Type: "reading", Subject: "patient-2", Data: i}, true)
	}
	h.deliver(Event{Type: "reading", Subject: "patient-1", Data: "own reading"}, true)
	h.deliver(Event{Type: "rejected", Data: "unvalidated"}, true)
	h.publishSummary(time.Now(), map[string]int{"heart_rate": 7}, map[string]map[string]int{
		"patient-1": {"heart_rate": 2}, "patient-2": {"heart_rate": 5},
	}, 1)

	want := []string{"alert own alert", "reading own reading", `summary map[readings:map[heart_rate:2]`}
	for name, sub := range map[string]*subscriber{"bound": bound, "subject-filtered": picked} {
		got := drain(sub.ch)
		if len(got) != len(want) {
			t.Fatalf("%s subscriber got %q, want %q", name, got, want)
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("%s subscriber event %d = %q, want %q", name, i, got[i], want[i])
			}
		}
	}
	if n := len(drain(all.ch)); n != 3+MaxReadingsPerSecond+1 {
		t.Errorf("unbound subscriber got %d events, want %d (3 published, %d sampled readings, summary)", n, 3+MaxReadingsPerSecond+1, MaxReadingsPerSecond)
	}
}

func drain(ch chan Event) []string {
	var out []string
	for {
		select {
		case e := <-ch:
			out = append(out, e.Type+" "+fmtData(e.Data))
		default:
			return out
		}
	}
}

func fmtData(v any) string {
	if m, ok := v.(map[string]any); ok {
		delete(m, "time")
		return strings.TrimSpace(strings.ReplaceAll(fmtAny(m), "\n", " "))
	}
	return fmtAny(v)
}

func fmtAny(v any) string { return strings.TrimSpace(fmt.Sprint(v)) }

// TestPagesShareNavigation checks every dashboard page as served: the same navigation to
// the three top pages (the page's own marked current), the icon, the skip link, and a label
// for every form control.
func TestPagesShareNavigation(t *testing.T) {
	pages := []struct {
		name    string
		h       http.Handler
		current string // the nav link marked aria-current, "" for none
	}{
		{"overview", Dashboard(), "/"},
		{"subjects", Subjects(), "/subjects"},
		{"subject", Subject(), ""},
		{"sources", Sources(), "/sources"},
	}
	control := regexp.MustCompile(`<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"`)
	for _, p := range pages {
		rec := httptest.NewRecorder()
		p.h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: status %d", p.name, rec.Code)
		}
		html := rec.Body.String()
		for _, want := range []string{`<nav aria-label="pages"`, `<a class="skip" href="#main">`, `<main id="main">`,
			`<link rel="icon" href="/assets/favicon.svg"`} {
			if !strings.Contains(html, want) {
				t.Errorf("%s page lacks %s", p.name, want)
			}
		}
		for _, link := range []string{"/", "/subjects", "/sources"} {
			plain, current := `<a href="`+link+`">`, `<a href="`+link+`" aria-current="page">`
			switch {
			case link == p.current && !strings.Contains(html, current):
				t.Errorf("%s page does not mark its own link %s current", p.name, link)
			case link != p.current && !strings.Contains(html, plain):
				t.Errorf("%s page lacks a plain nav link to %s", p.name, link)
			}
		}
		for _, m := range control.FindAllStringSubmatch(html, -1) {
			if !strings.Contains(html, `for="`+m[1]+`"`) {
				t.Errorf("%s page: form control %q has no label", p.name, m[1])
			}
		}
	}
}
