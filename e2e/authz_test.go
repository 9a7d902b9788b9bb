package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/nats-io/nats.go"

	"github.com/pulselake/pulselake/internal/rules"
	"github.com/pulselake/pulselake/internal/token"
)

// The subject-binding tests: a token bound to one subject sees and sends that subject's data
// only, on every path; a path that cannot be filtered by subject refuses it.

const (
	ownSubject   = "authz-own"
	otherSubject = "authz-other"
)

// getJSON sends GET with an Authorization header value and decodes the JSON answer.
func getJSON(t *testing.T, url, auth string, out any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("GET %s: %d, not JSON: %s", url, resp.StatusCode, data)
		}
	}
	return resp.StatusCode
}

// sseEvent is one server-sent event.
type sseEvent struct{ Type, Data string }

// followEvents reads GET /v1/events with tok until ctx ends; events go to the returned log.
func followEvents(t *testing.T, ctx context.Context, baseURL, tok string) *eventLog {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", baseURL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/events: %d", resp.StatusCode)
	}
	l := &eventLog{}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var typ string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				l.add(sseEvent{typ, strings.TrimPrefix(line, "data: ")})
			}
		}
	}()
	return l
}

type eventLog struct {
	mu     sync.Mutex
	events []sseEvent
}

func (l *eventLog) add(e sseEvent) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []sseEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sseEvent(nil), l.events...)
}

// has reports whether an event of the type mentions s.
func (l *eventLog) has(typ, s string) bool {
	for _, e := range l.all() {
		if e.Type == typ && strings.Contains(e.Data, s) {
			return true
		}
	}
	return false
}

func crisisReading(subject, device string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"subject":%q,"device":%q,"kind":"blood_pressure","time":%q,"values":{"systolic":191,"diastolic":100}}`,
		subject, device, at.UTC().Format(time.RFC3339Nano))
}

func hrReading(subject, device string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"subject":%q,"device":%q,"kind":"heart_rate","time":%q,"values":{"bpm":71}}`,
		subject, device, at.UTC().Format(time.RFC3339Nano))
}

// TestSubjectBoundReadToken: a read token bound to one subject, while another subject's
// readings flow and its alert fires, gets only its own subject's readings, alerts and
// summaries on GET /v1/events, only its own alerts on GET /v1/alerts, only the silences naming
// its subject on GET /v1/silences, and 403 from the REST catalog.
func TestSubjectBoundReadToken(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bound, _, err := srv.Tokens.Create(ctx, token.ScopeRead, ownSubject, "patient app")
	if err != nil {
		t.Fatal(err)
	}
	unbound, _, err := srv.Tokens.Create(ctx, token.ScopeRead, "", "ward screen")
	if err != nil {
		t.Fatal(err)
	}

	own := followEvents(t, ctx, srv.HTTPURL, bound)
	all := followEvents(t, ctx, srv.HTTPURL, unbound)
	// Both subjects' readings flow (and both get a crisis alert) until each feed has seen
	// what it should: the unbound one the other subject's reading and alert, the bound one
	// its own.
	start, crisisSent := time.Now(), false
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * time.Millisecond)
		lines := [][]byte{hrReading(otherSubject, "hr-other", at), hrReading(ownSubject, "hr-own", at)}
		if !crisisSent && all.has("reading", otherSubject) && own.has("reading", ownSubject) {
			// Both feeds are live: the alerts' transitions will reach them.
			lines = append(lines, crisisReading(otherSubject, "bp-other", at), crisisReading(ownSubject, "bp-own", at))
			crisisSent = true
		}
		if code, body := postNDJSON(t, srv.HTTPURL, adminToken, lines); code != http.StatusAccepted {
			t.Fatalf("post: %d %v", code, body)
		}
		// A rejected record (its subject unvalidated) flows too.
		postNDJSON(t, srv.HTTPURL, adminToken, [][]byte{fmt.Appendf(nil, `{"subject":%q,"device":"x","kind":"heart_rate","time":"bad"}`, otherSubject)})
		if all.has("reading", otherSubject) && all.has("alert", otherSubject) && all.has("rejected", "invalid-time") &&
			own.has("reading", ownSubject) && own.has("alert", ownSubject) && own.has("summary", "heart_rate") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("feeds incomplete: unbound saw %d events, bound %d", len(all.all()), len(own.all()))
		}
		time.Sleep(100 * time.Millisecond) // the device's sending interval
	}
	var leaks []string
	for _, e := range own.all() {
		switch e.Type {
		case "reading", "alert":
			if !strings.Contains(e.Data, `"subject":"`+ownSubject+`"`) || strings.Contains(e.Data, otherSubject) {
				leaks = append(leaks, e.Type+" "+e.Data)
			}
		case "summary":
			var s struct {
				Readings map[string]int
				Rejected *int
			}
			// No count of rejected records, whose subject is unvalidated.
			if err := json.Unmarshal([]byte(e.Data), &s); err != nil || s.Rejected != nil {
				leaks = append(leaks, e.Type+" "+e.Data)
			}
		default:
			leaks = append(leaks, e.Type+" "+e.Data)
		}
	}
	if len(leaks) > 0 {
		t.Errorf("the bound token's feed carried %d events not of its subject, e.g.:\n%s", len(leaks), strings.Join(leaks[:min(3, len(leaks))], "\n"))
	}

	// GET /v1/alerts: both alerts fire; the bound token lists its own only.
	waitUntil(t, 10*time.Second, "both crisis alerts fire", func() bool {
		n := 0
		for _, a := range firingAlerts(t, srv.HTTPURL) {
			if a.Rule == "hypertensive-crisis" && (a.Subject == ownSubject || a.Subject == otherSubject) {
				n++
			}
		}
		return n == 2
	})
	for _, state := range []string{"", "?state=firing"} {
		var body struct{ Alerts []rules.Alert }
		if code := getJSON(t, srv.HTTPURL+"/v1/alerts"+state, "Bearer "+bound, &body); code != http.StatusOK {
			t.Fatalf("GET /v1/alerts%s: %d", state, code)
		}
		if len(body.Alerts) == 0 {
			t.Errorf("GET /v1/alerts%s: the bound token's own alert is missing", state)
		}
		for _, a := range body.Alerts {
			if a.Subject != ownSubject {
				t.Errorf("GET /v1/alerts%s with the bound token lists %s's alert %s/%s", state, a.Subject, a.Rule, a.Device)
			}
		}
	}

	// GET /v1/silences: the bound token sees the silences naming its subject only.
	for _, m := range []string{"subject=" + ownSubject, "subject=" + otherSubject, "device=bp-other"} {
		body := fmt.Appendf(nil, `{"matchers":[%q],"duration":"1h","createdBy":"nurse","comment":"muted %s"}`, m, m)
		if code, resp := post(t, srv.HTTPURL+"/v1/silences", adminToken, "application/json", body); code != http.StatusOK {
			t.Fatalf("POST /v1/silences: %d %v", code, resp)
		}
	}
	var sils []struct{ Comment string }
	if code := getJSON(t, srv.HTTPURL+"/v1/silences", "Bearer "+bound, &sils); code != http.StatusOK {
		t.Fatalf("GET /v1/silences: %d", code)
	}
	if len(sils) != 1 || sils[0].Comment != "muted subject="+ownSubject {
		t.Errorf("GET /v1/silences with the bound token = %+v, want only the silence of subject %s", sils, ownSubject)
	}
	if code, _ := post(t, srv.HTTPURL+"/v1/silences", bound, "application/json", []byte(`{"matchers":["subject=`+ownSubject+`"],"duration":"1h"}`)); code != http.StatusForbidden {
		t.Errorf("POST /v1/silences with a bound read token: %d, want 403", code)
	}

	// The REST catalog serves every subject's table metadata and file locations: refused.
	var errBody struct {
		Error struct{ Code, Message string }
	}
	if code := getJSON(t, srv.HTTPURL+"/iceberg/v1/config", "Bearer "+bound, &errBody); code != http.StatusForbidden || errBody.Error.Code != "subject-bound-token" {
		t.Errorf("GET /iceberg/v1/config with a bound token: %d %+v, want 403 subject-bound-token", code, errBody)
	}
	if code := getJSON(t, srv.HTTPURL+"/iceberg/v1/config", "Bearer "+unbound, nil); code != http.StatusOK {
		t.Errorf("GET /iceberg/v1/config with an unbound read token: %d, want 200", code)
	}
}

// TestSubjectBoundTokensOnMQTTAndNATS: over MQTT and the NATS port, where stored messages carry
// no publisher identity and topics name no subject, subject-bound tokens are refused at
// CONNECT: a bound ingest token stores nothing (another subject's reading least of all), a
// bound read token receives nothing, while unbound tokens publish and subscribe. A bound ingest
// token's own readings are stored over HTTP; other subjects' are refused there.
func TestSubjectBoundTokensOnMQTTAndNATS(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	ctx := context.Background()
	mk := func(scope token.Scope, subject string) string {
		s, _, err := srv.Tokens.Create(ctx, scope, subject, "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	boundIngest, unboundIngest := mk(token.ScopeIngest, ownSubject), mk(token.ScopeIngest, "")
	boundRead, unboundRead := mk(token.ScopeRead, ownSubject), mk(token.ScopeRead, "")

	connect := func(id, secret string) (mqtt.Client, error) {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID(id).
			SetUsername("device").SetPassword(secret).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4))
		tk := c.Connect()
		if !tk.WaitTimeout(10 * time.Second) {
			t.Fatalf("MQTT connect %s: no answer in 10s", id)
		}
		return c, tk.Error()
	}
	publish := func(c mqtt.Client, topic string, payload []byte) {
		t.Helper()
		tk := c.Publish(topic, 1, false, payload)
		if !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("MQTT publish: %v", tk.Error())
		}
	}

	// Subscribers: the unbound ones must see the other subject's reading, the bound ones nothing.
	var mu sync.Mutex
	got := map[string][]string{}
	record := func(who, payload string) {
		mu.Lock()
		got[who] = append(got[who], payload)
		mu.Unlock()
	}
	received := func(who, s string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range got[who] {
			if strings.Contains(p, s) {
				return true
			}
		}
		return false
	}
	subscribed := map[string]bool{}
	for _, c := range []struct{ who, secret string }{{"mqtt-unbound", unboundRead}, {"mqtt-bound", boundRead}} {
		mc, err := connect(c.who, c.secret)
		if err != nil {
			if c.who == "mqtt-unbound" || !errors.Is(err, packets.ErrorRefusedNotAuthorised) {
				t.Fatalf("MQTT connect %s: %v", c.who, err)
			}
			continue
		}
		defer mc.Disconnect(100)
		who := c.who
		tk := mc.Subscribe("readings/+/+", 1, func(_ mqtt.Client, m mqtt.Message) { record(who, string(m.Payload())) })
		if tk.WaitTimeout(10*time.Second) && tk.Error() == nil {
			subscribed[who] = true
		}
	}
	for _, c := range []struct{ who, secret string }{{"nats-unbound", unboundRead}, {"nats-bound", boundRead}} {
		nc, err := nats.Connect(srv.NATSURL, nats.UserInfo("reader", c.secret), nats.MaxReconnects(0))
		if err != nil {
			if c.who == "nats-unbound" || !strings.Contains(err.Error(), "Authorization Violation") {
				t.Fatalf("NATS connect %s: %v", c.who, err)
			}
			continue
		}
		defer nc.Close()
		who := c.who
		if _, err := nc.Subscribe("readings.>", func(m *nats.Msg) { record(who, string(m.Data)) }); err == nil && nc.Flush() == nil {
			subscribed[who] = true
		}
	}
	if !subscribed["mqtt-unbound"] || !subscribed["nats-unbound"] {
		t.Fatalf("unbound read tokens could not subscribe: %v", subscribed)
	}

	// The bound ingest token: refused at CONNECT; if it were let in, it could store another
	// subject's reading.
	at := time.Now().UTC()
	otherReading := hrReading(otherSubject, "hr-mqtt-1", at)
	bc, err := connect("bound-device", boundIngest)
	switch {
	case err == nil:
		publish(bc, "readings/heart_rate/hr-mqtt-1", otherReading)
		publish(bc, "readings/heart_rate/hr-mqtt-1", hrReading(ownSubject, "hr-mqtt-1", at))
		bc.Disconnect(100)
		t.Errorf("MQTT CONNECT with a subject-bound ingest token was accepted, want CONNACK not authorized")
	case !errors.Is(err, packets.ErrorRefusedNotAuthorised):
		t.Errorf("MQTT CONNECT with a subject-bound ingest token: %v, want CONNACK not authorized", err)
	}
	// An unbound device publishes the other subject's reading (which the subscribers get) and
	// then a marker; once the marker is stored, anything the bound token sent would be too.
	uc, err := connect("unbound-device", unboundIngest)
	if err != nil {
		t.Fatalf("MQTT connect with an unbound ingest token: %v", err)
	}
	defer uc.Disconnect(100)
	publish(uc, "readings/heart_rate/hr-mqtt-2", hrReading(otherSubject, "hr-mqtt-2", at))
	publish(uc, "readings/heart_rate/hr-mqtt-3", hrReading("authz-marker", "hr-mqtt-3", at))
	waitUntil(t, 10*time.Second, "the unbound subscribers receive the other subject's reading", func() bool {
		return received("mqtt-unbound", "hr-mqtt-2") && received("nats-unbound", "hr-mqtt-2")
	})
	var devices []string
	waitUntil(t, 30*time.Second, "the MQTT readings are in the lake", func() bool {
		devices = devices[:0]
		for _, r := range apiQuery(t, srv.HTTPURL, "SELECT device, subject FROM trusted.heart_rate WHERE device LIKE 'hr-mqtt-%' ORDER BY ALL") {
			devices = append(devices, fmt.Sprint(r[0], "/", r[1]))
		}
		return strings.Contains(strings.Join(devices, " "), "hr-mqtt-3")
	})
	if want := "hr-mqtt-2/" + otherSubject + " hr-mqtt-3/authz-marker"; strings.Join(devices, " ") != want {
		t.Errorf("stored MQTT readings %q, want %q: the bound token's must not be there", devices, want)
	}
	for _, who := range []string{"mqtt-bound", "nats-bound"} {
		if received(who, otherSubject) {
			t.Errorf("%s: a subject-bound read token received another subject's reading", who)
		}
	}

	// Over HTTP the bound ingest token stores its own subject's readings and no one else's.
	if code, body := postNDJSON(t, srv.HTTPURL, boundIngest, [][]byte{hrReading(ownSubject, "hr-http", at)}); code != http.StatusAccepted {
		t.Errorf("HTTP post of its own subject with a bound ingest token: %d %v", code, body)
	}
	code, body := postNDJSON(t, srv.HTTPURL, boundIngest, [][]byte{hrReading(otherSubject, "hr-http", at)})
	if rej, _ := body["rejected"].([]any); code != http.StatusUnprocessableEntity || len(rej) != 1 || rej[0].(map[string]any)["code"] != "subject-not-allowed" {
		t.Errorf("HTTP post of another subject with a bound ingest token: %d %v, want 422 subject-not-allowed", code, body)
	}
}

// TestBearerSchemeCaseInsensitive: the Authorization scheme is case-insensitive (RFC 9110
// §11.1), on the API and the REST catalog alike.
func TestBearerSchemeCaseInsensitive(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		for _, path := range []string{"/v1/alerts", "/v1/silences", "/iceberg/v1/config"} {
			if code := getJSON(t, srv.HTTPURL+path, scheme+" "+adminToken, nil); code != http.StatusOK {
				t.Errorf("GET %s with %q: %d, want 200", path, scheme, code)
			}
		}
	}
	var body struct{ Error struct{ Code string } }
	if code := getJSON(t, srv.HTTPURL+"/v1/alerts", "Basic "+adminToken, &body); code != http.StatusUnauthorized || body.Error.Code != "unauthenticated" {
		t.Errorf("another scheme: %d %+v, want 401 unauthenticated", code, body)
	}
}

// TestBoundAdminTokenRefused: an admin token cannot be bound to a subject (it could create
// itself an unbound token), so `token create --scope admin --subject` is a usage error.
func TestBoundAdminTokenRefused(t *testing.T) {
	dir := t.TempDir()
	out, code := runBin(t, "token", "create", "--scope", "admin", "--subject", "patient-1", "--data", dir)
	if code != 2 || !strings.Contains(out, "cannot be bound") {
		t.Errorf("bound admin token: exit %d: %s", code, out)
	}
	out, _ = runBin(t, "token", "list", "--data", dir)
	if strings.Contains(out, "admin") {
		t.Errorf("a refused token was stored: %s", out)
	}
	out, code = runBin(t, "token", "create", "--scope", "read", "--subject", "patient-1", "--data", dir)
	if code != 0 || !strings.HasPrefix(out, token.Prefix) || !strings.Contains(out, "bound to subject patient-1") {
		t.Errorf("bound read token: exit %d: %s", code, out)
	}
}

// TestRevokedTokenClosesConnections: revoking a token closes the MQTT and NATS connections
// already open with it (new ones are refused anyway); connections of other tokens stay.
func TestRevokedTokenClosesConnections(t *testing.T) {
	srv := startServer(t, t.TempDir())
	defer srv.stop()
	ctx := context.Background()
	revoked, _, err := srv.Tokens.Create(ctx, token.ScopeIngest, "", "to-revoke")
	if err != nil {
		t.Fatal(err)
	}
	kept, _, err := srv.Tokens.Create(ctx, token.ScopeIngest, "", "kept")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	lost := map[string]bool{}
	connect := func(id, secret string) mqtt.Client {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr).SetClientID(id).
			SetUsername("device").SetPassword(secret).SetCleanSession(true).
			SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4).
			SetConnectionLostHandler(func(mqtt.Client, error) { mu.Lock(); lost[id] = true; mu.Unlock() }))
		if tk := c.Connect(); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
			t.Fatalf("MQTT connect %s: %v", id, tk.Error())
		}
		return c
	}
	gone, stays := connect("dev-revoked", revoked), connect("dev-kept", kept)
	defer gone.Disconnect(100)
	defer stays.Disconnect(100)
	nc, err := nats.Connect(srv.NATSURL, nats.UserInfo("gateway", revoked), nats.MaxReconnects(0))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	var id string
	for _, tk := range srv.Tokens.List() {
		if tk.Name == "to-revoke" {
			id = tk.ID
		}
	}
	if _, err := srv.Tokens.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the revoked token's MQTT and NATS connections closed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return lost["dev-revoked"] && nc.IsClosed()
	})
	mu.Lock()
	keptLost := lost["dev-kept"]
	mu.Unlock()
	if keptLost || !stays.IsConnectionOpen() {
		t.Fatal("the connection of a token that was not revoked was closed")
	}
	if tk := stays.Publish("readings/heart_rate/dev-kept", 1, false, hrReading("revoke-kept", "dev-kept", time.Now())); !tk.WaitTimeout(10*time.Second) || tk.Error() != nil {
		t.Fatalf("publish with the kept token: %v", tk.Error())
	}
}
