package ecg

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Input forms of a beat sent to a model server.
const (
	// InputWindowRR sends 191 values per beat: the 187 window samples, then the RR features
	// pre, post, local and average in seconds (0 when unknown).
	InputWindowRR = "window_rr"
	// InputWindow sends the 187 window samples only (the form of Kachuee et al.'s CNN).
	InputWindow = "window"
)

// ErrKServe marks a failed call to a KServe v2 model server.
var ErrKServe = errors.New("model server")

// maxKServeResponse bounds the body read from a model server.
const maxKServeResponse = 32 << 20

// KServeOptions configures a KServe client.
type KServeOptions struct {
	URL     string // base URL, e.g. http://127.0.0.1:8000
	Model   string // model name on the server
	Version string // optional model version
	Tensor  string // input tensor name (default "input")
	Input   string // InputWindowRR (default) or InputWindow
	Timeout time.Duration
	Batch   int // most beats per request (default DefaultKServeBatch)
	Client  *http.Client
}

// KServe is a BatchClassifier calling an external model server over the KServe v2 (Open
// Inference Protocol) REST API: POST {url}/v2/models/{model}[/versions/{v}]/infer with one
// FP32 input tensor of shape [beats, 191] (or [beats, 187] with InputWindow), reading the
// first output tensor, which must have shape [beats, 5]: a score per class in the order N,
// S, V, F, Q. Rows that are probabilities (non-negative, summing to 1 within 1e-3) are used
// as they are; other rows are taken as logits and go through a softmax.
type KServe struct {
	o        KServeOptions
	inferURL string
}

// NewKServe returns a client; it does not contact the server (see Ready).
func NewKServe(o KServeOptions) (*KServe, error) {
	if o.Tensor == "" {
		o.Tensor = "input"
	}
	if o.Input == "" {
		o.Input = InputWindowRR
	}
	if o.Input != InputWindowRR && o.Input != InputWindow {
		return nil, fmt.Errorf("kserve input form %q: want %s or %s", o.Input, InputWindowRR, InputWindow)
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultKServeTimeout
	}
	if o.Batch <= 0 {
		o.Batch = DefaultKServeBatch
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	u, err := url.Parse(strings.TrimRight(o.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("kserve url %q: want http(s)://host:port", o.URL)
	}
	if o.Model == "" {
		return nil, errors.New("kserve: a model name is required")
	}
	path := "/v2/models/" + url.PathEscape(o.Model)
	if o.Version != "" {
		path += "/versions/" + url.PathEscape(o.Version)
	}
	return &KServe{o: o, inferURL: u.String() + path + "/infer"}, nil
}

// Name implements BatchClassifier.
func (k *KServe) Name() string {
	if k.o.Version != "" {
		return "kserve:" + k.o.Model + "/" + k.o.Version
	}
	return "kserve:" + k.o.Model
}

// Ready asks the server whether the model is ready (GET .../ready, 200 when it is).
func (k *KServe) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, k.o.Timeout)
	defer cancel()
	u := strings.TrimSuffix(k.inferURL, "/infer") + "/ready"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := k.o.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrKServe, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%w %s: model not ready: HTTP %d %s", ErrKServe, u, resp.StatusCode, errorText(body))
	}
	return nil
}

// KServeTensor is a tensor of the v2 REST API.
type KServeTensor struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape"`
	Datatype string          `json:"datatype"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// KServeRequest is an inference request of the v2 REST API.
type KServeRequest struct {
	ID     string         `json:"id,omitempty"`
	Inputs []KServeTensor `json:"inputs"`
}

// KServeResponse is an inference response of the v2 REST API.
type KServeResponse struct {
	ModelName    string         `json:"model_name"`
	ModelVersion string         `json:"model_version,omitempty"`
	ID           string         `json:"id,omitempty"`
	Outputs      []KServeTensor `json:"outputs"`
	Error        string         `json:"error,omitempty"`
}

// Width returns the number of values per beat of an input form.
func Width(input string) int {
	if input == InputWindow {
		return WindowLen
	}
	return WindowLen + 4
}

// EncodeKServeRequest builds the request body for beats.
func EncodeKServeRequest(id, tensor, input string, beats []LiveBeat) ([]byte, error) {
	w := Width(input)
	var data bytes.Buffer
	data.Grow(len(beats) * w * 8)
	data.WriteByte('[')
	for i := range beats {
		b := &beats[i]
		for k, v := range b.Window {
			if i > 0 || k > 0 {
				data.WriteByte(',')
			}
			data.Write(strconv.AppendFloat(nil, float64(v), 'g', -1, 32))
		}
		if w > WindowLen {
			for _, v := range [4]float64{b.RR.Pre, b.RR.Post, b.RR.Local, b.RR.Average} {
				data.WriteByte(',')
				data.Write(strconv.AppendFloat(nil, v, 'g', 7, 32))
			}
		}
	}
	data.WriteByte(']')
	return json.Marshal(KServeRequest{ID: id, Inputs: []KServeTensor{{
		Name: tensor, Shape: []int64{int64(len(beats)), int64(w)}, Datatype: "FP32", Data: data.Bytes(),
	}}})
}

// ClassifyBeats implements BatchClassifier: one request per Batch beats, each bounded by
// Timeout.
func (k *KServe) ClassifyBeats(ctx context.Context, beats []LiveBeat) ([]Prediction, error) {
	out := make([]Prediction, 0, len(beats))
	for start := 0; start < len(beats); start += k.o.Batch {
		end := min(start+k.o.Batch, len(beats))
		ps, err := k.infer(ctx, beats[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

func (k *KServe) infer(ctx context.Context, beats []LiveBeat) ([]Prediction, error) {
	body, err := EncodeKServeRequest("", k.o.Tensor, k.o.Input, beats)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.inferURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := k.o.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w %s: no answer within %s (ecg.kserve_timeout)", ErrKServe, k.inferURL, k.o.Timeout)
		}
		return nil, fmt.Errorf("%w %s: %v", ErrKServe, k.inferURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxKServeResponse+1))
	if err != nil {
		return nil, fmt.Errorf("%w %s: reading the response: %v", ErrKServe, k.inferURL, err)
	}
	if len(data) > maxKServeResponse {
		return nil, fmt.Errorf("%w %s: response larger than %d bytes", ErrKServe, k.inferURL, maxKServeResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w %s: HTTP %d: %s", ErrKServe, k.inferURL, resp.StatusCode, errorText(data))
	}
	ps, err := DecodeKServeResponse(data, len(beats))
	if err != nil {
		return nil, fmt.Errorf("%w %s: %v", ErrKServe, k.inferURL, err)
	}
	return ps, nil
}

// errorText is the "error" of a v2 error body, or the body itself, shortened.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	s := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = e.Error
	}
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}

// DecodeKServeResponse reads n predictions from a v2 inference response: the first output,
// of shape [n, 5] and a numeric datatype, with its data flat or nested in row-major order.
func DecodeKServeResponse(body []byte, n int) ([]Prediction, error) {
	var r KServeResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("response is not a v2 inference response: %v", err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("server error: %s", r.Error)
	}
	if len(r.Outputs) == 0 {
		return nil, errors.New("response has no outputs")
	}
	o := r.Outputs[0]
	switch o.Datatype {
	case "FP32", "FP64", "FP16":
	default:
		return nil, fmt.Errorf("output %q has datatype %q; want FP32 or FP64 class scores", o.Name, o.Datatype)
	}
	if len(o.Shape) != 2 || o.Shape[0] != int64(n) || o.Shape[1] != NumClasses {
		return nil, fmt.Errorf("output %q has shape %v; want [%d, %d] (beats × classes N, S, V, F, Q)", o.Name, o.Shape, n, NumClasses)
	}
	vals, err := flattenOutput(o.Data, n*NumClasses)
	if err != nil {
		return nil, fmt.Errorf("output %q: %v", o.Name, err)
	}
	if len(vals) != n*NumClasses {
		return nil, fmt.Errorf("output %q holds %d values; want %d", o.Name, len(vals), n*NumClasses)
	}
	out := make([]Prediction, n)
	for i := range out {
		if err := out[i].fromScores(vals[i*NumClasses : (i+1)*NumClasses]); err != nil {
			return nil, fmt.Errorf("output %q row %d %v", o.Name, i, err)
		}
	}
	return out, nil
}

// flattenOutput returns the numbers of tensor data, flat or nested up to two levels, in
// row-major order; more than limit of them is an error.
func flattenOutput(data json.RawMessage, limit int) ([]float64, error) {
	vals := make([]float64, 0, limit)
	var flatten func(raw json.RawMessage, depth int) error
	flatten = func(raw json.RawMessage, depth int) error {
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && raw[0] == '[' {
			if depth > 2 {
				return errors.New("output data nested too deeply")
			}
			var items []json.RawMessage
			if err := json.Unmarshal(raw, &items); err != nil {
				return err
			}
			for _, it := range items {
				if err := flatten(it, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		var v float64
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("output value %s is not a number", truncateBytes(raw))
		}
		if len(vals) == cap(vals) {
			return fmt.Errorf("holds more than %d values", limit)
		}
		vals = append(vals, v)
		return nil
	}
	if err := flatten(data, 0); err != nil {
		return nil, err
	}
	return vals, nil
}

// fromScores sets p from one row of class scores: taken as probabilities (renormalized) when
// they are in [0, 1] and sum to 1, else as logits through softmax.
func (p *Prediction) fromScores(row []float64) error {
	sum, probs := 0.0, true
	for _, v := range row {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("holds %v", v)
		}
		sum += v
		probs = probs && v >= 0 && v <= 1
	}
	if probs && math.Abs(sum-1) <= 1e-3 {
		for c, v := range row {
			p.Probs[c] = v / sum
		}
	} else {
		softmax(p.Probs[:], row)
	}
	for c := 1; c < NumClasses; c++ {
		if p.Probs[c] > p.Probs[p.Class] {
			p.Class = Class(c)
		}
	}
	return nil
}

func truncateBytes(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}
