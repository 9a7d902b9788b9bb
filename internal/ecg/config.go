package ecg

import (
	"net/url"
	"time"

	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Config is the `ecg:` section of the configuration file: streaming heartbeat
// classification in serve (docs/ecg.md, "Streaming").
type Config struct {
	// Enabled runs the classifier in serve (default true).
	Enabled *bool `yaml:"enabled"`
	// Model is a model file written by `pulselake ecg train`, relative to the config file;
	// empty uses the model embedded in the binary.
	Model string `yaml:"model"`
	// KServeURL, when set, sends beats to an external model server speaking the KServe v2
	// (Open Inference Protocol) REST API instead of the built-in model, e.g.
	// http://127.0.0.1:8000 (requests go to {url}/v2/models/{kserve_model}/infer).
	KServeURL string `yaml:"kserve_url"`
	// KServeModel is the model name on that server (required with kserve_url).
	KServeModel string `yaml:"kserve_model"`
	// KServeVersion optionally pins a model version.
	KServeVersion string `yaml:"kserve_version"`
	// KServeTimeout bounds one inference request (default 5s).
	KServeTimeout yamlconf.Duration `yaml:"kserve_timeout"`
	// KServeBatch is the most beats per inference request (default 256).
	KServeBatch int `yaml:"kserve_batch"`
	// KServeInput is how a beat is sent: "window_rr" (default; 191 values: the 187 window
	// samples then the RR features pre, post, local, average in seconds, 0 when unknown) or
	// "window" (the 187 samples only).
	KServeInput string `yaml:"kserve_input"`
	// KServeTensor is the name of the input tensor (default "input").
	KServeTensor string `yaml:"kserve_tensor"`
	// MaxDevices bounds the devices whose state (run of equal classes, sample-stream
	// detector) is kept (default 10000); the least recently seen is evicted beyond it.
	MaxDevices int `yaml:"max_devices"`
	// MaxStreams bounds the devices sending raw `ecg` samples whose QRS detector state is kept
	// (default 1000, about 75 KB each at 360 Hz).
	MaxStreams int `yaml:"max_streams"`
	// IdleTimeout evicts the state of devices not heard from for this long (default 10m).
	IdleTimeout yamlconf.Duration `yaml:"idle_timeout"`
}

// Defaults of Config.
const (
	DefaultKServeTimeout = 5 * time.Second
	DefaultKServeBatch   = 256
	DefaultMaxDevices    = 10000
	DefaultMaxStreams    = 1000
	DefaultIdleTimeout   = 10 * time.Minute
	maxKServeBatch       = 65536
)

// On reports whether streaming classification is enabled.
func (c Config) On() bool { return c.Enabled == nil || *c.Enabled }

// WithDefaults returns c with zero values replaced by the defaults.
func (c Config) WithDefaults() Config {
	if c.KServeTimeout == 0 {
		c.KServeTimeout = yamlconf.Duration(DefaultKServeTimeout)
	}
	if c.KServeBatch == 0 {
		c.KServeBatch = DefaultKServeBatch
	}
	if c.KServeInput == "" {
		c.KServeInput = InputWindowRR
	}
	if c.KServeTensor == "" {
		c.KServeTensor = "input"
	}
	if c.MaxDevices == 0 {
		c.MaxDevices = DefaultMaxDevices
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = yamlconf.Duration(DefaultIdleTimeout)
	}
	return c
}

// Validate returns every problem, each starting with its YAML path ("ecg.kserve_url: ...").
func (c Config) Validate() yamlconf.Problems {
	var errs yamlconf.Problems
	bad := func(path, format string, args ...any) { errs.Add("ecg."+path, format, args...) }
	if c.KServeURL != "" {
		u, err := url.Parse(c.KServeURL)
		switch {
		case err != nil:
			bad("kserve_url", "not a URL: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("kserve_url", "%q is not an http(s) URL (e.g. http://127.0.0.1:8000)", c.KServeURL)
		case u.Host == "":
			bad("kserve_url", "%q names no host", c.KServeURL)
		}
		if c.KServeModel == "" {
			bad("kserve_model", "required with kserve_url: the model name on the server")
		}
		if c.Model != "" {
			bad("model", "give either model (a local model file) or kserve_url, not both")
		}
	} else if c.KServeModel != "" || c.KServeVersion != "" {
		bad("kserve_url", "kserve_model and kserve_version need kserve_url")
	}
	if c.KServeModel != "" && !validName(c.KServeModel) {
		bad("kserve_model", "%q: use letters, digits, '.', '_' and '-'", c.KServeModel)
	}
	if c.KServeVersion != "" && !validName(c.KServeVersion) {
		bad("kserve_version", "%q: use letters, digits, '.', '_' and '-'", c.KServeVersion)
	}
	if c.KServeTensor != "" && !validName(c.KServeTensor) {
		bad("kserve_tensor", "%q: use letters, digits, '.', '_' and '-'", c.KServeTensor)
	}
	if c.KServeTimeout < 0 {
		bad("kserve_timeout", "must not be negative")
	}
	if c.KServeBatch < 0 || c.KServeBatch > maxKServeBatch {
		bad("kserve_batch", "must be 1..%d, got %d", maxKServeBatch, c.KServeBatch)
	}
	switch c.KServeInput {
	case "", InputWindowRR, InputWindow:
	default:
		bad("kserve_input", "want %s or %s, got %q", InputWindowRR, InputWindow, c.KServeInput)
	}
	if c.MaxDevices < 0 {
		bad("max_devices", "must not be negative")
	}
	if c.MaxStreams < 0 {
		bad("max_streams", "must not be negative")
	}
	if c.IdleTimeout < 0 {
		bad("idle_timeout", "must not be negative")
	}
	return errs
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return s != "" && len(s) <= 128
}
