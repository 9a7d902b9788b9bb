package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCodeOf(t *testing.T) {
	for _, tt := range []struct {
		status int
		want   string
	}{
		{http.StatusBadRequest, "bad-request"},
		{http.StatusNotFound, "not-found"},
		{http.StatusMethodNotAllowed, "method-not-allowed"},
		{http.StatusInternalServerError, "internal"},
		{599, "internal"},
	} {
		if got := CodeOf(tt.status); got != tt.want {
			t.Errorf("CodeOf(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

// TestPlainErrors checks that a text error of a wrapped handler becomes the error body and
// that a successful response passes through untouched.
func TestPlainErrors(t *testing.T) {
	for _, tt := range []struct {
		name     string
		h        http.HandlerFunc
		status   int
		ctype    string
		wantBody string
	}{
		{"text error", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "Unknown profile", http.StatusNotFound) },
			404, "application/json", `{"error":{"code":"not-found","message":"Unknown profile"}}` + "\n"},
		{"success", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("heap profile"))
		}, 200, "text/plain", "heap profile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			PlainErrors(tt.h).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != tt.status || rec.Header().Get("Content-Type") != tt.ctype || rec.Body.String() != tt.wantBody {
				t.Errorf("got %d %q %q, want %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String(), tt.status, tt.ctype, tt.wantBody)
			}
			if tt.status >= 400 {
				var b ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
					t.Error(err)
				}
			}
		})
	}
}
