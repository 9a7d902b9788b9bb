package ecg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// v2Server is a model server speaking the KServe v2 / Open Inference Protocol REST API
// (inference_rest.md of the protocol): GET /v2/models/{name}/ready, POST
// /v2/models/{name}/infer with {"id"?, "inputs":[{"name","shape","datatype","data"}]} and the
// answer {"model_name","id"?,"outputs":[{"name","shape","datatype","data"}]}, errors as
// {"error": "..."} with a 4xx/5xx status. It serves the built-in model on inputs of shape
// [n, 191] (window and RR features) or [n, 187], and answers probabilities or, with logits
// set, log-probabilities. It decodes the request with its own generic structures, not the
// client's types.
type v2Server struct {
	model    *Model
	name     string
	logits   atomic.Bool
	requests atomic.Int64
	maxBatch atomic.Int64
	hook     atomic.Pointer[hookFunc] // answers instead when it returns true
}

type hookFunc func(w http.ResponseWriter, r *http.Request) bool

// setHook sets (or, with nil, clears) the hook; handlers of earlier requests may still run.
func (s *v2Server) setHook(h hookFunc) {
	if h == nil {
		s.hook.Store(nil)
		return
	}
	s.hook.Store(&h)
}

func (s *v2Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, format string, args ...any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, args...)})
	}
	prefix := "/v2/models/" + s.name
	switch {
	case r.Method == http.MethodGet && r.URL.Path == prefix+"/ready":
		w.WriteHeader(http.StatusOK)
		return
	case r.Method == http.MethodPost && r.URL.Path == prefix+"/infer":
	default:
		fail(http.StatusNotFound, "unknown model or path %s %s", r.Method, r.URL.Path)
		return
	}
	s.requests.Add(1)
	if h := s.hook.Load(); h != nil && (*h)(w, r) {
		return
	}
	var req struct {
		ID     string `json:"id"`
		Inputs []struct {
			Name     string    `json:"name"`
			Shape    []int     `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float64 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(http.StatusBadRequest, "invalid request: %v", err)
		return
	}
	if len(req.Inputs) != 1 || req.Inputs[0].Name != "input" || req.Inputs[0].Datatype != "FP32" || len(req.Inputs[0].Shape) != 2 {
		fail(http.StatusBadRequest, "want one FP32 input named input of rank 2")
		return
	}
	in := req.Inputs[0]
	n, width := in.Shape[0], in.Shape[1]
	if (width != WindowLen && width != WindowLen+4) || len(in.Data) != n*width {
		fail(http.StatusBadRequest, "shape %v does not match %d values", in.Shape, len(in.Data))
		return
	}
	if int64(n) > s.maxBatch.Load() {
		s.maxBatch.Store(int64(n))
	}
	out := make([]float32, 0, n*NumClasses)
	for i := 0; i < n; i++ {
		row := in.Data[i*width : (i+1)*width]
		var w [WindowLen]float32
		for k := range w {
			w[k] = float32(row[k])
		}
		var rr RRFeatures
		if width > WindowLen {
			rr = RRFeatures{Pre: row[WindowLen], Post: row[WindowLen+1], Local: row[WindowLen+2], Average: row[WindowLen+3]}
		}
		p := s.model.ClassifyWindow(&w, rr)
		for _, v := range p.Probs {
			if s.logits.Load() {
				v = logOf(v)
			}
			out = append(out, float32(v))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"model_name": s.name, "model_version": "1", "id": req.ID,
		"outputs": []map[string]any{{"name": "probabilities", "shape": []int{n, NumClasses}, "datatype": "FP32", "data": out}}})
}

func logOf(v float64) float64 {
	if v < 1e-30 {
		v = 1e-30
	}
	return math.Log(v)
}

func newV2(t *testing.T) (*v2Server, *httptest.Server) {
	t.Helper()
	m, err := DefaultModel()
	if err != nil {
		t.Fatal(err)
	}
	s := &v2Server{model: m, name: "ecg-gbt"}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

func TestKServeMatchesBuiltinModel(t *testing.T) {
	s, hs := newV2(t)
	local, _ := NewLocal("")
	beats := syntheticLiveBeats(120)
	want, _ := local.ClassifyBeats(context.Background(), beats)
	for _, logits := range []bool{false, true} {
		s.logits.Store(logits)
		s.requests.Store(0)
		k, err := NewKServe(KServeOptions{URL: hs.URL + "/", Model: "ecg-gbt", Batch: 50})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		got, err := k.ClassifyBeats(context.Background(), beats)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%d predictions for %d beats", len(got), len(beats))
		}
		for i := range got {
			if got[i].Class != want[i].Class {
				t.Fatalf("logits=%v beat %d: class %v, built-in %v", logits, i, got[i].Class, want[i].Class)
			}
			for c := range got[i].Probs {
				if d := got[i].Probs[c] - want[i].Probs[c]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("logits=%v beat %d class %d: p %v, built-in %v", logits, i, c, got[i].Probs[c], want[i].Probs[c])
				}
			}
		}
		// 120 beats in batches of at most 50: three requests.
		if s.requests.Load() != 3 || s.maxBatch.Load() != 50 {
			t.Errorf("%d requests, largest batch %d; want 3 and 50", s.requests.Load(), s.maxBatch.Load())
		}
	}
	// The window-only form sends 187 values; the server then classifies by shape.
	k, _ := NewKServe(KServeOptions{URL: hs.URL, Model: "ecg-gbt", Input: InputWindow})
	got, err := k.ClassifyBeats(context.Background(), beats[:10])
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		shape := local.Model.ClassifyWindow(&beats[i].Window, RRFeatures{})
		if got[i].Class != shape.Class {
			t.Errorf("window-only beat %d: %v, shape model %v", i, got[i].Class, shape.Class)
		}
	}
	if k.Name() != "kserve:ecg-gbt" {
		t.Errorf("Name() = %q", k.Name())
	}
}

func TestKServeErrors(t *testing.T) {
	s, hs := newV2(t)
	beats := syntheticLiveBeats(3)
	call := func(o KServeOptions) error {
		if o.URL == "" {
			o.URL = hs.URL
		}
		if o.Model == "" {
			o.Model = "ecg-gbt"
		}
		k, err := NewKServe(o)
		if err != nil {
			return err
		}
		_, err = k.ClassifyBeats(context.Background(), beats)
		return err
	}
	for _, tc := range []struct {
		name string
		o    KServeOptions
		hook hookFunc
		want string
	}{
		{"unknown model", KServeOptions{Model: "other"}, nil, "HTTP 404: unknown model"},
		{"wrong tensor name", KServeOptions{Tensor: "x"}, nil, "HTTP 400: want one FP32 input named input"},
		{"server error", KServeOptions{}, func(w http.ResponseWriter, _ *http.Request) bool {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"CUDA out of memory"}`))
			return true
		}, "HTTP 500: CUDA out of memory"},
		{"wrong shape", KServeOptions{}, func(w http.ResponseWriter, _ *http.Request) bool {
			w.Write([]byte(`{"model_name":"ecg-gbt","outputs":[{"name":"y","shape":[3,2],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`))
			return true
		}, "shape [3 2]; want [3, 5]"},
		{"class indices", KServeOptions{}, func(w http.ResponseWriter, _ *http.Request) bool {
			w.Write([]byte(`{"model_name":"ecg-gbt","outputs":[{"name":"y","shape":[3],"datatype":"INT64","data":[0,2,1]}]}`))
			return true
		}, `datatype "INT64"`},
		{"short data", KServeOptions{}, func(w http.ResponseWriter, _ *http.Request) bool {
			w.Write([]byte(`{"model_name":"ecg-gbt","outputs":[{"name":"y","shape":[3,5],"datatype":"FP32","data":[1,2,3]}]}`))
			return true
		}, "holds 3 values; want 15"},
		{"not JSON", KServeOptions{}, func(w http.ResponseWriter, _ *http.Request) bool {
			w.Write([]byte(`<html>proxy error</html>`))
			return true
		}, "not a v2 inference response"},
		{"timeout", KServeOptions{Timeout: 50 * time.Millisecond}, func(w http.ResponseWriter, r *http.Request) bool {
			io.Copy(io.Discard, r.Body) // the server notices a closed connection only after the body
			<-r.Context().Done()
			return true
		}, "no answer within 50ms (ecg.kserve_timeout)"},
	} {
		s.setHook(tc.hook)
		err := call(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrKServe) {
			t.Errorf("%s: got %v, want an ErrKServe containing %q", tc.name, err, tc.want)
		}
	}
	s.setHook(nil)
	// Nested output data (allowed by the protocol) is read in row-major order.
	ps, err := DecodeKServeResponse([]byte(`{"outputs":[{"name":"y","shape":[2,5],"datatype":"FP64","data":[[0.1,0.2,0.6,0.1,0],[1,0,0,0,0]]}]}`), 2)
	if err != nil || ps[0].Class != ClassV || ps[1].Class != ClassN || ps[0].Probs[2] != 0.6 {
		t.Errorf("nested data: %+v, %v", ps, err)
	}
	if _, err := NewKServe(KServeOptions{URL: "127.0.0.1:8000", Model: "m"}); err == nil {
		t.Error("URL without scheme accepted")
	}
	k, _ := NewKServe(KServeOptions{URL: hs.URL, Model: "missing"})
	if err := k.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "model not ready: HTTP 404") {
		t.Errorf("Ready of a missing model: %v", err)
	}
}

func TestEncodeKServeRequest(t *testing.T) {
	beats := syntheticLiveBeats(2)
	body, err := EncodeKServeRequest("r1", "input", InputWindowRR, beats)
	if err != nil {
		t.Fatal(err)
	}
	var req struct {
		ID     string `json:"id"`
		Inputs []struct {
			Name     string    `json:"name"`
			Shape    []int     `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float32 `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	in := req.Inputs[0]
	if req.ID != "r1" || in.Name != "input" || in.Datatype != "FP32" || fmt.Sprint(in.Shape) != "[2 191]" || len(in.Data) != 382 {
		t.Fatalf("request %s", body[:min(len(body), 200)])
	}
	if in.Data[191+5] != beats[1].Window[5] || in.Data[191+187+1] != float32(beats[1].RR.Post) {
		t.Error("values are not in row-major order, window then RR")
	}
}

func FuzzDecodeKServeResponse(f *testing.F) {
	f.Add([]byte(`{"outputs":[{"name":"y","shape":[1,5],"datatype":"FP32","data":[0.1,0.2,0.3,0.2,0.2]}]}`), 1)
	f.Add([]byte(`{"outputs":[{"name":"y","shape":[2,5],"datatype":"FP64","data":[[1,2,3,4,5],[5,4,3,2,1]]}]}`), 2)
	f.Add([]byte(`{"error":"x"}`), 1)
	f.Add([]byte(`{"outputs":[{"shape":[1,5],"datatype":"FP32","data":[[[[1]]]]}]}`), 1)
	f.Fuzz(func(t *testing.T, body []byte, n int) {
		if n < 0 || n > 1000 {
			return
		}
		ps, err := DecodeKServeResponse(body, n)
		if err != nil {
			return
		}
		if len(ps) != n {
			t.Fatalf("%d predictions for %d", len(ps), n)
		}
		for _, p := range ps {
			sum := 0.0
			for _, v := range p.Probs {
				if !(v >= 0 && v <= 1) {
					t.Fatalf("probability %v", v)
				}
				sum += v
			}
			if sum < 0.999 || sum > 1.001 {
				t.Fatalf("probabilities sum to %v", sum)
			}
		}
	})
}
