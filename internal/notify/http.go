package notify

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// SilencesHandler serves the silences API (JSON, Alertmanager's v2 silence shape):
//
//	GET    /v1/silences          list, each with "status": {"state": "active|pending|expired"}
//	POST   /v1/silences          create: {"matchers":[{"name":"device","value":"bp-1","isRegex":false,"isEqual":true}] or ["device=bp-1"],
//	                             "startsAt":..., "endsAt":... or "duration":"2h", "createdBy":..., "comment":...}
//	                             → 200 {"silenceID": "..."}
//	DELETE /v1/silences/{id}     expire
//
// Mount it at both /v1/silences and /v1/silences/. Authentication is the caller's.
func SilencesHandler(s *Silences) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/silences"), "/")
		switch {
		case r.Method == http.MethodGet && id == "":
			now := s.opts.Now()
			type out struct {
				Silence
				Status struct {
					State string `json:"state"`
				} `json:"status"`
			}
			list := s.List(r.Context())
			res := make([]out, len(list))
			for i, sil := range list {
				res[i].Silence = sil
				res[i].Status.State = sil.State(now)
			}
			writeJSON(w, http.StatusOK, res)
		case r.Method == http.MethodPost && id == "":
			var in struct {
				Silence
				Duration string `json:"duration"`
			}
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				writeError(w, http.StatusBadRequest, "decoding silence: "+err.Error())
				return
			}
			if in.Duration != "" {
				dur, err := time.ParseDuration(in.Duration)
				if err != nil || dur <= 0 {
					writeError(w, http.StatusBadRequest, "duration: want a positive duration like 2h")
					return
				}
				if in.StartsAt.IsZero() {
					in.StartsAt = s.opts.Now()
				}
				in.EndsAt = in.StartsAt.Add(dur)
			}
			newID, err := s.Create(r.Context(), in.Silence)
			if err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, ErrInvalidSilence) {
					status = http.StatusBadRequest
				}
				writeError(w, status, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"silenceID": newID})
		case r.Method == http.MethodDelete && id != "":
			if err := s.Expire(r.Context(), id); err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, ErrSilenceNotFound) {
					status = http.StatusNotFound
				}
				writeError(w, status, err.Error())
				return
			}
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Allow", "GET, POST, DELETE")
			writeError(w, http.StatusMethodNotAllowed, "use GET or POST /v1/silences, DELETE /v1/silences/{id}")
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
