// Package alerting measures alert latency end to end: a crisis reading published into the
// ingest stream until the webhook receiver has the notification, under background load.
//
//	PULSELAKE_BENCH=1 go test ./bench/alerting -run TestAlertLatency -v -timeout 5m
package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulselake/pulselake/internal/notify"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/yamlconf"
)

const (
	backgroundRate = 10000 // readings per second
	batchSize      = 100
	probes         = 300
	// backgroundDevices each send one heart-rate reading per second, like a ward of wearables.
	backgroundDevices = 10000
)

func TestAlertLatency(t *testing.T) {
	if os.Getenv("PULSELAKE_BENCH") == "" {
		t.Skip("set PULSELAKE_BENCH=1 to run the alert latency benchmark")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := stream.StartServer(log, stream.ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	conn, err := stream.Connect(ctx, log, stream.ConnOptions{Server: srv, Name: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	received := map[string]time.Time{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var m notify.WebhookMessage
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		for _, a := range m.Alerts {
			if a.Status == "firing" {
				if _, ok := received[a.Labels["device"]]; !ok {
					received[a.Labels["device"]] = now
				}
			}
		}
		mu.Unlock()
	}))
	defer hook.Close()

	zero, interval := yamlconf.Duration(0), yamlconf.Duration(time.Minute)
	d, err := notify.New(ctx, log, prometheus.NewRegistry(), notify.Options{Config: notify.Config{
		Channels: []notify.Channel{{Name: "hook", Webhook: &notify.WebhookConfig{URL: hook.URL}}},
		Route:    &notify.Route{GroupBy: []string{"alertname", "device"}, GroupWait: &zero, GroupInterval: &interval},
	}})
	if err != nil {
		t.Fatal(err)
	}
	state, err := conn.KV(ctx, "alerts", "bench")
	if err != nil {
		t.Fatal(err)
	}
	e, err := rules.NewEngine(ctx, log, prometheus.NewRegistry(), rules.Options{
		Rules: rules.DefaultRules(), JS: conn.JS, State: state, Notify: d.Notify,
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{e.Run, d.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	defer wg.Wait()
	defer cancel()
	for {
		if _, err := conn.JS.Consumer(ctx, stream.IngestStream, "rules"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	reg, _ := reading.NewRegistry()
	mk := func(p *reading.Parser, raw string) stream.Entry {
		r, errs := p.Parse([]byte(raw))
		if errs != nil {
			t.Fatal(errs)
		}
		return stream.Entry{Identity: r.Identity(), Reading: &r, Raw: []byte(raw)}
	}
	// Background load: 10,000 normal readings per second in batches of 100.
	var sent atomic.Int64
	bgCtx, bgStop := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		p := reading.NewParser(reg)
		tick := time.NewTicker(time.Second * batchSize / backgroundRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-bgCtx.Done():
				return
			case <-tick.C:
			}
			b := &stream.Batch{Source: stream.SourceHTTP, Received: time.Now()}
			now := time.Now()
			for j := range batchSize {
				dev := (i*batchSize + j) % backgroundDevices
				raw := fmt.Sprintf(`{"subject":"bg-%d","device":"hr-%d","kind":"heart_rate","time":%d,"values":{"bpm":%d}}`, dev, dev, now.UnixMilli(), 60+i%20)
				b.Entries = append(b.Entries, mk(p, raw))
			}
			if _, err := conn.Publish(bgCtx, b); err == nil {
				sent.Add(batchSize)
			}
		}
	}()

	p := reading.NewParser(reg)
	start := time.Now()
	published := map[string]time.Time{}
	time.Sleep(time.Second) // let the background load reach its rate before probing
	for i := range probes {
		dev := fmt.Sprintf("probe-%d", i)
		raw := fmt.Sprintf(`{"subject":"probe-%d","device":%q,"kind":"blood_pressure","time":%d,"values":{"systolic":185,"diastolic":95}}`, i, dev, time.Now().UnixMilli())
		b := &stream.Batch{Source: stream.SourceHTTP, Received: time.Now(), Entries: []stream.Entry{mk(p, raw)}}
		published[dev] = time.Now()
		if _, err := conn.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // probe spacing (pacing, not synchronization)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n == probes || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	bgStop()
	bg.Wait()
	mu.Lock()
	var lat []time.Duration
	for dev, t0 := range published {
		if t1, ok := received[dev]; ok {
			lat = append(lat, t1.Sub(t0))
		}
	}
	mu.Unlock()
	if len(lat) < probes {
		t.Fatalf("only %d of %d alerts arrived", len(lat), probes)
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	rate := float64(sent.Load()) / elapsed.Seconds()
	t.Logf("alerts=%d background=%.0f readings/s p50=%s p90=%s p99=%s max=%s", len(lat), rate, pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1])
	if pct(0.99) > 100*time.Millisecond {
		t.Errorf("p99 %s above the 100 ms target", pct(0.99))
	}
}
