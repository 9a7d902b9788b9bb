// Package config is pulselake's configuration: the YAML schema, its defaults, Load (strict:
// unknown keys are errors) and Validate, which reports every problem with file:line.
//
// Flags override the file: Check loads the file, applies the flags a command was given and
// validates the result, listing every problem of the file, its rule files and the flags at
// once.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/pulselake/pulselake/internal/anomaly"
	"github.com/pulselake/pulselake/internal/ecg"
	"github.com/pulselake/pulselake/internal/fhir"
	"github.com/pulselake/pulselake/internal/lake"
	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/pipeline"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

// Config is the whole configuration file.
type Config struct {
	HTTP HTTP `yaml:"http"`
	MQTT MQTT `yaml:"mqtt"`
	NATS NATS `yaml:"nats"`
	// Cluster configures `serve --cluster` (SPEC §12, docs/scale-out.md).
	Cluster Cluster `yaml:"cluster"`
	Ingest  Ingest  `yaml:"ingest"`
	// Runtime tunes the Go runtime of serve.
	Runtime Runtime      `yaml:"runtime"`
	Kinds   []KindConfig `yaml:"kinds"`
	Log     Log          `yaml:"log"`

	// Alerting (SPEC §7, docs/alerting.md).
	Rules     []rules.Rule `yaml:"rules"`
	RuleFiles []string     `yaml:"rule_files"`
	// DefaultRules runs the shipped rules (hypertensive crisis, tachycardia, bradycardia,
	// device silent) beside the configured ones (default true); a configured rule with the
	// same name replaces the shipped one.
	DefaultRules *bool                `yaml:"default_rules"`
	Notify       []notify.Channel     `yaml:"notify"`
	Route        *notify.Route        `yaml:"route"`
	InhibitRules []notify.InhibitRule `yaml:"inhibit_rules"`

	// Lake (SPEC §5, docs/lake.md).
	Lake lake.Config `yaml:"lake"`
	// Query bounds SQL queries of POST /v1/query and `pulselake query`.
	Query Query `yaml:"query"`

	// ECG configures streaming heartbeat classification in serve (docs/ecg.md).
	ECG ecg.Config `yaml:"ecg"`

	// Detectors are the streaming anomaly detectors of serve (docs/anomaly.md).
	Detectors []anomaly.DetectorSpec `yaml:"detectors"`
	// DetectorsCheckpoint is how often serve saves the detectors' baselines and alerts to
	// the KV bucket pulselake_detectors (default 30s; also on a clean shutdown). After a crash
	// at most this much learning is lost.
	DetectorsCheckpoint yamlconf.Duration `yaml:"detectors_checkpoint"`

	// Pipelines are the model folders serve runs on schedules (SPEC §6, docs/pipelines.md).
	Pipelines []pipeline.Folder `yaml:"pipelines"`

	// Imports bounds exports uploaded to POST /v1/imports (docs/sources.md).
	Imports Imports `yaml:"imports"`

	// Connectors are the wearable clouds pulled on a schedule (SPEC §10, docs/sources.md).
	Connectors Connectors `yaml:"connectors"`

	file string    // path of the file loaded, "" for defaults
	ast  *ast.File // its syntax tree, for line numbers
}

// HTTP configures the API and dashboard listener.
type HTTP struct {
	// Listen is host:port (default 127.0.0.1:8080; loopback unless configured otherwise).
	Listen string `yaml:"listen"`
}

// MQTT configures the device listener (the NATS server's MQTT 3.1.1 listener).
type MQTT struct {
	// Listen is host:port (default 127.0.0.1:1883); "off" disables MQTT.
	Listen string `yaml:"listen"`
}

// NATS configures the stream.
type NATS struct {
	// URL of an external NATS cluster; empty runs the embedded server under <data>/stream.
	URL string `yaml:"url"`
	// Listen is the embedded server's NATS client listener, used by CLI commands while serve
	// runs (default 127.0.0.1:0, a free loopback port recorded in <data>/serve.json).
	Listen string `yaml:"listen"`
	// Replicas of streams and buckets (default 1; use 3 on a cluster).
	Replicas int `yaml:"replicas"`
	// Retention of the ingest stream (default 168h).
	Retention yamlconf.Duration `yaml:"retention"`
	// MaxBytes bounds the ingest stream; when full new batches get 503 (default 0, unbounded).
	MaxBytes int64 `yaml:"max_bytes"`
	// MinFreeBytes is the free space the embedded stream's disk keeps (default 256 MiB):
	// below it serve is not ready and batches every consumer has processed are removed from
	// the ingest stream, oldest first; after a failed write (disk full) JetStream is turned
	// on again once this much is free.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
}

// Imports bounds the wearable exports uploaded to serve.
type Imports struct {
	// MaxBytes is the largest upload (default 10 GiB); larger ones get 413. Uploads are
	// spooled to <data>/imports until imported.
	MaxBytes int64 `yaml:"max_bytes"`
	// MaxQueued is the most imports waiting or running at once (default 4; one per
	// subject); more get 429.
	MaxQueued int `yaml:"max_queued"`
}

// Ingest configures the front doors.
type Ingest struct {
	// MaxBodyBytes is the largest request body (default 16 MiB); larger ones get 413.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxBatch is the most readings per request (default 10000); more get 413.
	MaxBatch int `yaml:"max_batch"`
	// MaxInflightBytes bounds the memory of requests being processed at once (default
	// 256 MiB): bodies as they arrive, then the parsed readings and envelopes (about 12×
	// the body in all). Beyond it requests get 429 with Retry-After instead of queueing.
	MaxInflightBytes int64 `yaml:"max_inflight_bytes"`
	// BodyTimeout is the longest a request body may take to arrive (default 30s); a slower
	// one gets 408 and its connection is closed.
	BodyTimeout yamlconf.Duration `yaml:"body_timeout"`
	// PublishWait is how long a batch waits for room among the batches being stored in the
	// stream (default 5s) before its request gets 429 with Retry-After.
	PublishWait yamlconf.Duration `yaml:"publish_wait"`
	// DedupWindow is how long reading identities are remembered for de-duplication at the
	// front door (default 2m); the lake de-duplicates without limit.
	DedupWindow yamlconf.Duration `yaml:"dedup_window"`
	// DedupMaxEntries bounds that memory (default 500,000 identities, about 12.6 MB: the
	// whole window at up to 4,000 readings/s; at higher rates, an import, the oldest
	// identities go first); at most MaxDedupEntries.
	DedupMaxEntries int `yaml:"dedup_max_entries"`
}

// MaxDedupEntries is the largest ingest.dedup_max_entries: about 25 bytes an identity.
const MaxDedupEntries = 100_000_000

// Runtime tunes the Go runtime of serve.
type Runtime struct {
	// MemoryLimit is the soft limit of serve's Go heap, a size like "768MiB" (the default;
	// "0" turns it off; the GOMEMLIMIT environment variable overrides it). The Go collector
	// otherwise lets the heap grow to twice the live data; near the limit it collects more
	// often instead. Live data stays below it because intake is bounded
	// (ingest.max_inflight_bytes, the stream's publish window, bounded consumer pulls,
	// lake.flush_bytes). DuckDB's memory is outside it (query.memory_limit).
	MemoryLimit string `yaml:"memory_limit"`
}

// MemoryLimitBytes is MemoryLimit in bytes; 0 when off.
func (r Runtime) MemoryLimitBytes() int64 {
	n, _ := ParseBytes(r.MemoryLimit)
	return n
}

// KindConfig declares an extra kind of reading (SPEC §3).
type KindConfig struct {
	Name   string        `yaml:"name"`
	Values []ValueConfig `yaml:"values"`
	// LOINC is the LOINC code of a kind with one number value (e.g. 29463-7, body weight):
	// FHIR Observations of that code become readings of the kind and back (docs/formats.md).
	LOINC string `yaml:"loinc"`
	// UCUM is the UCUM unit code of that value in FHIR (e.g. kg); required with loinc.
	UCUM string `yaml:"ucum"`
}

// ValueConfig declares one value of an extra kind.
type ValueConfig struct {
	Name     string   `yaml:"name"`
	Type     string   `yaml:"type"` // number (default) or string
	Unit     string   `yaml:"unit"`
	Min      *float64 `yaml:"min"`
	Max      *float64 `yaml:"max"`
	Required bool     `yaml:"required"`
	Enum     []string `yaml:"enum"`
}

// Query bounds SQL queries.
type Query struct {
	// MaxRows is the most rows one query returns (default 10000); more are cut and flagged.
	MaxRows int `yaml:"max_rows"`
	// Timeout is the time limit of one query (default 30s).
	Timeout yamlconf.Duration `yaml:"timeout"`
	// MemoryLimit caps the memory of a SQL engine (serve's, shared by all its queries, and
	// that of a pipeline run), e.g. "2GiB" or "512MB". Empty (the default) means a quarter of the
	// machine's memory, at least 256 MiB and at most 4 GiB. A query that needs more, after
	// spilling to the temp directory, fails with a clear error.
	MemoryLimit string `yaml:"memory_limit"`
	// TempDirMaxBytes caps the spill files the SQL engine writes under <data>/cache/query-tmp
	// (default 4 GiB).
	TempDirMaxBytes int64 `yaml:"temp_dir_max_bytes"`
	// Threads is the SQL engine's worker threads (default 0: one per CPU).
	Threads int `yaml:"threads"`
}

// MemoryLimitBytes is MemoryLimit in bytes; 0 when empty (the engine picks its default).
// Validate reports a value it cannot parse.
func (q Query) MemoryLimitBytes() int64 {
	n, _ := ParseBytes(q.MemoryLimit)
	return n
}

// ParseBytes parses a size such as "2GiB", "512MB", "1.5 GB" or "1048576" (bytes): units
// B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB (powers of 1024), case-insensitive.
// The empty string is 0.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("size %q: want a number and a unit such as 512MiB or 2GB", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q; use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB", s, unit)
	}
	if v*mult > 1<<62 {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return int64(v * mult), nil
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // text (default) or json
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		HTTP: HTTP{Listen: "127.0.0.1:8080"},
		MQTT: MQTT{Listen: "127.0.0.1:1883"},
		NATS: NATS{Listen: "127.0.0.1:0", Replicas: 1, Retention: yamlconf.Duration(7 * 24 * time.Hour), MinFreeBytes: 256 << 20},
		Ingest: Ingest{
			MaxBodyBytes:     16 << 20,
			MaxBatch:         10000,
			MaxInflightBytes: 256 << 20,
			BodyTimeout:      yamlconf.Duration(30 * time.Second),
			PublishWait:      yamlconf.Duration(5 * time.Second),
			DedupWindow:      yamlconf.Duration(2 * time.Minute),
			DedupMaxEntries:  500_000,
		},
		Imports:             Imports{MaxBytes: 10 << 30, MaxQueued: 4},
		Runtime:             Runtime{MemoryLimit: "768MiB"},
		Log:                 Log{Level: "info", Format: "text"},
		DetectorsCheckpoint: yamlconf.Duration(30 * time.Second),
		Connectors:          defaultConnectors(),
		Cluster:             defaultCluster(),
	}
}

// Load reads the file over the defaults. Mistakes (YAML syntax, unknown keys, values of the
// wrong type, bad durations) are returned as Problems with file:line and YAML path. After
// mistakes other than a syntax error it returns, beside them, the configuration read from
// every other key, so that Check can list them together with Validate's. An empty path
// returns the defaults.
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	f, err := yamlconf.Parse(path, data)
	if err != nil {
		return nil, err
	}
	c, ps := yamlconf.Decode(path, f, Default)
	c.file, c.ast = path, f
	if len(ps) > 0 {
		return c, ps
	}
	return c, nil
}

// Check loads the file, applies the command's flags over it (apply; nil when it takes
// none), reads the rule files it names and validates the whole, and returns every problem of
// all of them, sorted by file and line: what `pulselake check config` lists, and what serve
// and every command stop at, in one pass. A value problem at a key that could not be read is
// left out (it would only repeat the reading problem).
func Check(path string, apply func(*Config)) (*Config, error) {
	c, err := Load(path)
	var ps Problems
	if err != nil && (c == nil || !errors.As(err, &ps)) {
		return nil, err
	}
	if apply != nil {
		apply(c)
	}
	var vps Problems
	if err := c.Validate(); err != nil && !errors.As(err, &vps) {
		return nil, err
	}
	for _, v := range vps {
		if !under(v.Path, ps) {
			ps = append(ps, v)
		}
	}
	ps = append(ps, c.checkRuleFiles()...)
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File == c.file // the configuration file first, then each rule file
		}
		return ps[i].Line < ps[j].Line
	})
	return c, ps.Err()
}

// checkRuleFiles reads every rule file of rule_files (glob patterns, relative to the
// configuration file) as serve would, and returns the problems of each with its file:line:
// YAML syntax, unknown keys, bad values and rules that do not compile.
func (c *Config) checkRuleFiles() Problems {
	reg, err := c.checkRegistry()
	if err != nil {
		return nil // reported at kinds
	}
	var ps Problems
	for i, pattern := range c.RuleFiles {
		if pattern == "" {
			continue // reported by Validate
		}
		if !filepath.IsAbs(pattern) {
			pattern = filepath.Join(c.Dir(), pattern)
		}
		matches, err := filepath.Glob(pattern)
		if err != nil {
			ps.Add(fmt.Sprintf("rule_files[%d]", i), "pattern %q: %v", pattern, err)
			continue
		}
		if len(matches) == 0 && !strings.ContainsAny(pattern, "*?[") {
			matches = []string{pattern}
		}
		for _, m := range matches {
			ps = append(ps, checkRuleFile(m, reg)...)
		}
	}
	ps.Locate(c.file, c.ast)
	return ps
}

// checkRuleFile returns the problems of one rule file, located in it.
func checkRuleFile(name string, reg *reading.Registry) Problems {
	data, err := os.ReadFile(name)
	if err != nil {
		return Problems{{File: name, Msg: fmt.Sprintf("reading rule file: %v (check rule_files)", err)}}
	}
	f, err := yamlconf.Parse(name, data)
	if err != nil {
		var ps Problems
		if errors.As(err, &ps) {
			return ps
		}
		return Problems{{File: name, Msg: err.Error()}}
	}
	rf, ps := yamlconf.Decode(name, f, func() *rules.File { return &rules.File{} })
	_, cps := rules.Compile(rf.Rules, reg)
	cps.Locate(name, f)
	for _, p := range cps {
		if !under(p.Path, ps) {
			ps = append(ps, p)
		}
	}
	return ps
}

// under tells whether path is the path of one of the problems or inside it.
func under(path string, ps Problems) bool {
	for _, p := range ps {
		if p.Path != "" && (path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[")) {
			return true
		}
	}
	return false
}

// Problem is one configuration problem at a place in the file.
type Problem = yamlconf.Problem

// Problems is every problem found; it is an error.
type Problems = yamlconf.Problems

// Validate checks every value and returns all problems with file:line, or nil.
func (c *Config) Validate() error {
	var ps Problems
	c.validateListeners(&ps)
	c.validateCluster(&ps)
	c.validateIngest(&ps)
	c.validateKinds(&ps)
	c.validateAlerting(&ps)
	lc := c.Lake.WithDefaults(os.TempDir()) // the data directory only fills defaults that are always valid
	ps = append(ps, lc.Validate()...)
	ps = append(ps, c.ECG.Validate()...)
	ps = append(ps, pipeline.ValidateFolders(c.Pipelines)...)
	c.Connectors.validate(&ps)
	c.validateQuery(&ps)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.Add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		ps.Add("log.format", "want text or json, got %q", c.Log.Format)
	}
	ps.Locate(c.file, c.ast)
	ps.Sort()
	return ps.Err()
}

// validateListeners checks the HTTP, MQTT and NATS settings.
func (c *Config) validateListeners(ps *Problems) {
	checkAddr := func(path, addr string, allowOff bool) {
		if allowOff && addr == "off" {
			return
		}
		if _, _, err := splitAddr(addr); err != nil {
			ps.Add(path, "want host:port (e.g. 127.0.0.1:8080): %v", err)
		}
	}
	checkAddr("http.listen", c.HTTP.Listen, false)
	checkAddr("mqtt.listen", c.MQTT.Listen, true)
	if c.NATS.URL == "" {
		checkAddr("nats.listen", c.NATS.Listen, true)
	} else if !strings.HasPrefix(c.NATS.URL, "nats://") && !strings.HasPrefix(c.NATS.URL, "tls://") {
		ps.Add("nats.url", "want nats://host:port or tls://host:port, got %q", c.NATS.URL)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		ps.Add("nats.replicas", "must be 1..5, got %d", c.NATS.Replicas)
	}
	if c.NATS.Retention.D() < time.Hour {
		ps.Add("nats.retention", "must be at least 1h so the lake can catch up after downtime, got %s", c.NATS.Retention.D())
	}
	if c.NATS.MinFreeBytes < 1<<20 {
		ps.Add("nats.min_free_bytes", "must be at least 1 MiB (1048576), got %d", c.NATS.MinFreeBytes)
	}
}

// validateIngest checks the front doors' limits and the Go runtime's memory limit.
func (c *Config) validateIngest(ps *Problems) {
	in := c.Ingest
	if in.MaxBodyBytes < 1024 || in.MaxBodyBytes > 1<<30 {
		ps.Add("ingest.max_body_bytes", "must be 1 KiB..1 GiB, got %d", in.MaxBodyBytes)
	}
	if c.Imports.MaxBytes < 1<<20 || c.Imports.MaxBytes > 1<<40 {
		ps.Add("imports.max_bytes", "must be 1 MiB..1 TiB, got %d", c.Imports.MaxBytes)
	}
	if c.Imports.MaxQueued < 1 || c.Imports.MaxQueued > 100 {
		ps.Add("imports.max_queued", "must be 1..100, got %d", c.Imports.MaxQueued)
	}
	if in.MaxBatch < 1 || in.MaxBatch > 1_000_000 {
		ps.Add("ingest.max_batch", "must be 1..1000000, got %d", in.MaxBatch)
	}
	if in.MaxInflightBytes < in.MaxBodyBytes {
		ps.Add("ingest.max_inflight_bytes", "must be at least ingest.max_body_bytes (%d), got %d", in.MaxBodyBytes, in.MaxInflightBytes)
	}
	if d := in.BodyTimeout.D(); d < time.Second || d > time.Hour {
		ps.Add("ingest.body_timeout", "must be 1s..1h, got %s", d)
	}
	if d := in.PublishWait.D(); d < time.Millisecond || d > time.Minute {
		ps.Add("ingest.publish_wait", "must be 1ms..1m, got %s", d)
	}
	if m, err := ParseBytes(c.Runtime.MemoryLimit); err != nil {
		ps.Add("runtime.memory_limit", "%v", err)
	} else if m != 0 && m < 64<<20 {
		ps.Add("runtime.memory_limit", "must be 0 (off) or at least 64MiB, got %q", c.Runtime.MemoryLimit)
	}
	if in.DedupWindow.D() < 0 {
		ps.Add("ingest.dedup_window", "must not be negative")
	}
	if in.DedupMaxEntries < 0 || in.DedupMaxEntries > MaxDedupEntries {
		ps.Add("ingest.dedup_max_entries", "must be 0 to %d identities (about 2.5 GB of memory), got %d", MaxDedupEntries, in.DedupMaxEntries)
	}
	if d := c.DetectorsCheckpoint.D(); d < time.Second || d > time.Hour {
		ps.Add("detectors_checkpoint", "must be 1s..1h, got %s", d)
	}
}

// validateKinds checks the declared kinds of reading.
func (c *Config) validateKinds(ps *Problems) {
	if _, err := c.Registry(); err != nil {
		ps.Add("kinds", "%v", err)
	}
	for i, k := range c.Kinds {
		for j, v := range k.Values {
			if v.Type != "" && v.Type != "number" && v.Type != "string" {
				ps.Add(fmt.Sprintf("kinds[%d].values[%d].type", i, j), "want number or string, got %q", v.Type)
			}
		}
		c.validateKindCode(ps, i, k)
	}
	if reg, err := c.Registry(); err == nil {
		if _, err := fhir.NewMapper(reg, c.FHIRCodes()); err != nil {
			ps.Add("kinds", "%v", err)
		}
	}
}

// FHIRCodes lists the declared kinds that name a LOINC code.
func (c *Config) FHIRCodes() []fhir.Declared {
	var out []fhir.Declared
	for _, k := range c.Kinds {
		if k.LOINC != "" {
			out = append(out, fhir.Declared{Kind: k.Name, LOINC: k.LOINC, UCUM: k.UCUM})
		}
	}
	return out
}

// loincRe is the form of a LOINC code: digits, a hyphen and the check digit.
var loincRe = regexp.MustCompile(`^[0-9]{1,7}-[0-9]$`)

// validateKindCode checks the FHIR code of declared kind i.
func (c *Config) validateKindCode(ps *Problems, i int, k KindConfig) {
	if k.LOINC == "" {
		if k.UCUM != "" {
			ps.Add(fmt.Sprintf("kinds[%d].ucum", i), "ucum needs loinc: name the kind's LOINC code too")
		}
		return
	}
	if !loincRe.MatchString(k.LOINC) {
		ps.Add(fmt.Sprintf("kinds[%d].loinc", i), "want a LOINC code such as 29463-7, got %q", k.LOINC)
	}
	if k.UCUM == "" || strings.ContainsAny(k.UCUM, " \t") {
		ps.Add(fmt.Sprintf("kinds[%d].ucum", i), "a kind with loinc needs its value's UCUM unit code without spaces (e.g. kg), got %q", k.UCUM)
	}
	if len(k.Values) != 1 || (k.Values[0].Type != "" && k.Values[0].Type != "number") {
		ps.Add(fmt.Sprintf("kinds[%d].loinc", i), "a kind with a LOINC code must have exactly one number value (it becomes valueQuantity)")
	}
}

// validateAlerting checks the rules, the notification settings and the detectors.
func (c *Config) validateAlerting(ps *Problems) {
	if reg, err := c.checkRegistry(); err == nil { // problems of the kinds are reported at kinds
		_, errs := rules.Compile(c.Rules, reg)
		*ps = append(*ps, errs...)
		_, dps := c.compileDetectorsWith(reg)
		*ps = append(*ps, dps...)
	}
	for i, f := range c.RuleFiles {
		if f == "" {
			ps.Add(fmt.Sprintf("rule_files[%d]", i), "empty path")
		}
	}
	nc := c.NotifyConfig()
	*ps = append(*ps, nc.Validate()...)
}

// validateQuery checks the SQL engine's limits.
func (c *Config) validateQuery(ps *Problems) {
	q := c.Query
	if q.MaxRows < 0 {
		ps.Add("query.max_rows", "must not be negative")
	}
	if q.Timeout.D() < 0 {
		ps.Add("query.timeout", "must not be negative")
	}
	if n, err := ParseBytes(q.MemoryLimit); err != nil {
		ps.Add("query.memory_limit", "%v", err)
	} else if q.MemoryLimit != "" && n < 64<<20 {
		ps.Add("query.memory_limit", "must be at least 64MiB, got %q", q.MemoryLimit)
	}
	if q.TempDirMaxBytes < 0 {
		ps.Add("query.temp_dir_max_bytes", "must not be negative (0 means the default, 4 GiB)")
	}
	if q.Threads < 0 || q.Threads > 1024 {
		ps.Add("query.threads", "must be 0 (one per CPU) .. 1024, got %d", q.Threads)
	}
}

// CompiledDetectors returns the validated streaming anomaly detectors.
func (c *Config) CompiledDetectors() ([]*anomaly.Detector, error) {
	ds, ps := c.compileDetectors()
	if len(ps) > 0 {
		ps.Locate(c.file, c.ast)
		return nil, ps
	}
	return ds, nil
}

func (c *Config) compileDetectors() ([]*anomaly.Detector, Problems) {
	reg, err := c.Registry()
	if err != nil {
		return nil, Problems{{Path: "kinds", Msg: err.Error()}}
	}
	return c.compileDetectorsWith(reg)
}

func (c *Config) compileDetectorsWith(reg *reading.Registry) ([]*anomaly.Detector, Problems) {
	return anomaly.CompileDetectors(c.Detectors, func(kind, value string) error {
		k, ok := reg.Kind(kind)
		if !ok {
			return fmt.Errorf("kind %q is not declared (built-in or under kinds:)", kind)
		}
		if f, ok := k.Field(value); !ok || f.Type != reading.Number {
			return fmt.Errorf("kind %s has no numeric value %q", kind, value)
		}
		return nil
	})
}

// AllRules are the configured rules plus, unless default_rules is false, the shipped ones
// that no configured rule replaces (by name).
func (c *Config) AllRules() []rules.Rule {
	out := append([]rules.Rule(nil), c.Rules...)
	if c.DefaultRules != nil && !*c.DefaultRules {
		return out
	}
	mine := map[string]bool{}
	for _, r := range c.Rules {
		mine[r.Name] = true
	}
	for _, r := range rules.DefaultRules() {
		if !mine[r.Name] {
			out = append(out, r)
		}
	}
	return out
}

// NotifyConfig is the notification part of the file.
func (c *Config) NotifyConfig() notify.Config {
	return notify.Config{Channels: c.Notify, Route: c.Route, InhibitRules: c.InhibitRules}
}

// File is the path of the loaded file ("" for defaults).
func (c *Config) File() string { return c.file }

// Dir is the directory of the loaded file, for resolving relative paths in it.
func (c *Config) Dir() string {
	if c.file == "" {
		return "."
	}
	return filepath.Dir(c.file)
}

// Registry returns the kinds registry: the built-in kinds plus those declared in the file.
func (c *Config) Registry() (*reading.Registry, error) {
	extra := make([]*reading.Kind, 0, len(c.Kinds))
	for _, k := range c.Kinds {
		extra = append(extra, k.kind())
	}
	// ecg_prediction is always declared, so a stream holding predictions stays readable.
	return reading.NewRegistry(append(extra, ecg.PredictionKind())...)
}

func (k KindConfig) kind() *reading.Kind {
	kind := &reading.Kind{Name: k.Name}
	for _, v := range k.Values {
		f := reading.Field{Name: v.Name, Unit: v.Unit, Required: v.Required, Min: v.Min, Max: v.Max, Enum: v.Enum}
		if v.Type == "string" {
			f.Type = reading.Text
		}
		kind.Fields = append(kind.Fields, f)
	}
	return kind
}

// checkRegistry is the registry rules, rule files and detectors are checked against. When the
// declared kinds have problems (reported at kinds), it still holds the built-in kinds and every
// declared kind that is valid, or valid once its ranges are ignored, so that the problems of
// the rules are listed in the same run.
func (c *Config) checkRegistry() (*reading.Registry, error) {
	reg, err := c.Registry()
	if err == nil {
		return reg, nil
	}
	kinds := []*reading.Kind{ecg.PredictionKind()}
	for _, k := range c.Kinds {
		kind := k.kind()
		if _, err := reading.NewRegistry(append(kinds, kind)...); err != nil {
			for i := range kind.Fields {
				kind.Fields[i].Min, kind.Fields[i].Max, kind.Fields[i].Enum = nil, nil, nil
			}
			if _, err := reading.NewRegistry(append(kinds, kind)...); err != nil {
				continue
			}
		}
		kinds = append(kinds, kind)
	}
	return reading.NewRegistry(kinds...)
}

func splitAddr(addr string) (string, string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", "", fmt.Errorf("port %q is not a number 0..65535", port)
	}
	return host, port, nil
}
