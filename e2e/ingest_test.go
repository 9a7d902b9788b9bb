package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/reading"
	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// TestIngestHTTPAndMQTT sends 10,000 readings of mixed kinds over HTTP in NDJSON batches
// and 1,000 over MQTT QoS1, 1% of them invalid, re-sends some batches, and then checks the
// stream: every valid reading exactly once, every invalid one in quarantine with its code.
func TestIngestHTTPAndMQTT(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	defer srv.stop()
	ctx := context.Background()
	ingestTok, _, err := srv.Tokens.Create(ctx, token.ScopeIngest, "", "e2e devices")
	if err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(7, 7))
	valid := map[reading.ID]bool{}
	wantCodes := map[string]int{}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	record := func(raw []byte, code string) {
		if code != "" {
			wantCodes[code]++
			return
		}
		r, errs := p.Parse(raw)
		if errs != nil {
			t.Fatalf("generated reading is invalid: %v", errs)
		}
		valid[r.Identity()] = true
	}

	// HTTP: 20 NDJSON batches of 500.
	const httpN, batch = 10000, 500
	var batches [][][]byte
	codesOf := map[int][]string{} // batch → codes of its invalid records
	for b := 0; b < httpN/batch; b++ {
		var lines [][]byte
		for i := 0; i < batch; i++ {
			n := b*batch + i
			raw, code := genReading(rng, n, n%100 == 42)
			record(raw, code)
			if code != "" {
				codesOf[b] = append(codesOf[b], code)
			}
			lines = append(lines, raw)
		}
		batches = append(batches, lines)
	}
	accepted, dups := 0, 0
	for i, lines := range batches {
		code, body := postNDJSON(t, srv.HTTPURL, ingestTok, lines)
		if code != http.StatusMultiStatus {
			t.Fatalf("batch %d: status %d, want 207 (some rejected): %v", i, code, body)
		}
		accepted += int(body["accepted"].(float64))
		dups += int(body["duplicates"].(float64))
		for _, r := range body["rejected"].([]any) {
			rej := r.(map[string]any)
			if rej["code"] == "" || rej["message"] == "" {
				t.Errorf("rejection without code or message: %v", rej)
			}
		}
	}
	// Re-send three batches (a client retrying after a timeout): the valid readings are all
	// duplicates; the invalid ones are quarantined again (each delivery attempt is kept).
	for _, i := range []int{0, 7, 19} {
		for _, c := range codesOf[i] {
			wantCodes[c]++
		}
		code, body := postNDJSON(t, srv.HTTPURL, ingestTok, batches[i])
		if code != http.StatusMultiStatus || body["accepted"].(float64) != 0 || body["duplicates"].(float64) != float64(batch-5) {
			t.Fatalf("re-sent batch %d: status %d body accepted=%v duplicates=%v", i, code, body["accepted"], body["duplicates"])
		}
	}
	if accepted != len(valid) || dups != 0 {
		t.Fatalf("HTTP accepted %d (dups %d), want %d valid", accepted, dups, len(valid))
	}

	// MQTT: 1,000 QoS1 messages, 1% invalid, topic readings/<kind>/<device>.
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID("e2e-device").
		SetUsername("e2e").SetPassword(ingestTok).SetCleanSession(true)
	mc := mqtt.NewClient(opts)
	if tk := mc.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("MQTT connect: %v", tk.Error())
	}
	defer mc.Disconnect(100)
	var toks []mqtt.Token
	for i := 0; i < 1000; i++ {
		n := httpN + i
		raw, code := genReading(rng, n, i%100 == 42)
		record(raw, code)
		var head struct{ Kind string }
		_ = json.Unmarshal(raw, &head)
		if head.Kind == "" {
			head.Kind = "heart_rate"
		}
		toks = append(toks, mc.Publish(fmt.Sprintf("readings/%s/dev-%d", head.Kind, n), 1, false, raw))
	}
	for i, tk := range toks {
		if !tk.WaitTimeout(30*time.Second) || tk.Error() != nil {
			t.Fatalf("MQTT message %d not acknowledged: %v", i, tk.Error())
		}
	}
	// A device whose token is wrong cannot connect.
	bad := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID("intruder").SetPassword("plk_wrong-token-000000000000"))
	if tk := bad.Connect(); tk.WaitTimeout(10*time.Second) && tk.Error() == nil {
		t.Error("MQTT accepted a connection with an unknown token")
	}

	// The stream, read as the lake will read it.
	cfg := config.Default()
	conn, closeConn, err := app.Dial(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	wantTotal := len(valid) + sum(wantCodes)
	deadline := time.Now().Add(30 * time.Second)
	var got map[reading.ID]int
	var rejected []stream.Entry
	for {
		var sources map[string]int
		got, rejected, sources = streamContents(t, conn)
		if len(got)+len(rejected) >= wantTotal || time.Now().After(deadline) {
			t.Logf("stream holds %d accepted and %d rejected records by source %v", len(got), len(rejected), sources)
			break
		}
		time.Sleep(100 * time.Millisecond) // polling the MQTT consumer's progress, bounded by the deadline
	}
	for id := range valid {
		if got[id] != 1 {
			t.Fatalf("valid reading %s is in the stream %d times, want exactly once", id, got[id])
		}
	}
	if len(got) != len(valid) {
		t.Errorf("stream holds %d distinct readings, want %d", len(got), len(valid))
	}
	gotCodes := map[string]int{}
	for _, e := range rejected {
		gotCodes[e.Errors[0].Code]++
		if len(e.Raw) == 0 {
			t.Error("quarantined record lost its payload")
		}
	}
	for code, n := range wantCodes {
		if gotCodes[code] != n {
			t.Errorf("quarantine holds %d records with code %s, want %d (all: %v)", gotCodes[code], code, n, gotCodes)
		}
	}
	if !strings.Contains(fmt.Sprint(gotCodes), reading.CodeOutOfRange) {
		t.Error("no out-of-range rejection recorded")
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
