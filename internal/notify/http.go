package notify

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/pulselake/pulselake/internal/httpapi"
)

// SilencesHandler serves the silences API (JSON, Alertmanager's v2 silence shape):
//
//	GET    /v1/silences          list, each with "status": {"state": "active|pending|expired"}
//	POST   /v1/silences          create: {"matchers":[{"name":"device","value":"bp-1","isRegex":false,"isEqual":true}] or ["device=bp-1"],
//	                             "startsAt":..., "endsAt":... or "duration":"2h", "createdBy":..., "comment":...}
//	                             → 200 {"silenceID": "..."}
//	DELETE /v1/silences/{id}     expire
//
// Mount it at both /v1/silences and /v1/silences/. Authentication is the caller's; visible,
// when not nil, picks the silences GET lists (a subject-bound caller sees those of its subject).
func SilencesHandler(s *Silences, visible func(Silence) bool) http.Handler {
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
			res := make([]out, 0, len(list))
			for _, sil := range list {
				if visible != nil && !visible(sil) {
					continue
				}
				o := out{Silence: sil}
				o.Status.State = sil.State(now)
				res = append(res, o)
			}
			httpapi.WriteJSON(w, http.StatusOK, res)
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
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"silenceID": newID})
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

// SilenceSubject is the subject a silence is limited to: the value of its equality matcher on
// the label subject (not a regular expression), "" when it has none and so may mute alerts of
// any subject.
func SilenceSubject(s Silence) string {
	for _, m := range s.Matchers {
		if m.Name == "subject" && m.IsEqual && !m.IsRegex {
			return m.Value
		}
	}
	return ""
}

// writeError writes the error body with the code of its status (bad-request, not-found,
// method-not-allowed, internal).
func writeError(w http.ResponseWriter, status int, msg string) {
	httpapi.WriteError(w, status, httpapi.CodeOf(status), msg)
}
