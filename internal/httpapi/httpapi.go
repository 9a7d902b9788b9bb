// Package httpapi writes pulselake's JSON responses: one JSON writer and one error body,
// {"error":{"code":"kebab-case-code","message":"..."}} (SPEC §13), for every route. Handlers in
// web, query, rules and notify use it; it imports nothing of pulselake, so any of them may.
//
// The Iceberg REST catalog (internal/restcatalog) answers with the Iceberg REST error model
// instead, as its clients expect.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error Error `json:"error"`
}

// Error is a stable kebab-case code a client may branch on and a message for the person
// reading it: what is wrong and what to do.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// WriteJSON writes v as JSON with the status code.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the status is sent; a failed write has no one to tell
}

// WriteError writes the error body with the status code.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	WriteJSON(w, status, ErrorBody{Error{Code: code, Message: msg}})
}

// CodeOf is the error code of a status for errors that have no more specific one:
// "internal" for 500, else the status text in kebab case ("not-found", "method-not-allowed").
func CodeOf(status int) string {
	if status == http.StatusInternalServerError {
		return "internal"
	}
	text := http.StatusText(status)
	if text == "" {
		return "internal"
	}
	return strings.ReplaceAll(strings.ToLower(text), " ", "-")
}

// PlainErrors wraps a handler pulselake does not own (net/http/pprof), which writes its
// errors as text: a response of status 400 or above goes out as the error body, the text its
// message and CodeOf(status) its code. Other responses pass through unchanged.
func PlainErrors(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ew := &errorWriter{ResponseWriter: w}
		h.ServeHTTP(ew, r)
		if ew.status != 0 {
			WriteError(w, ew.status, CodeOf(ew.status), strings.TrimSpace(ew.msg.String()))
		}
	})
}

// maxPlainError bounds the text of a wrapped handler's error kept for the message.
const maxPlainError = 4 << 10

// errorWriter holds back a response of status 400 or above and keeps its text.
type errorWriter struct {
	http.ResponseWriter
	status int // the held-back error status; 0 while the response is not an error
	msg    strings.Builder
}

func (e *errorWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest {
		e.status = code
		return
	}
	e.ResponseWriter.WriteHeader(code)
}

func (e *errorWriter) Write(p []byte) (int, error) {
	if e.status == 0 {
		return e.ResponseWriter.Write(p)
	}
	if room := maxPlainError - e.msg.Len(); room > 0 {
		e.msg.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// Unwrap gives http.ResponseController the underlying writer.
func (e *errorWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }
