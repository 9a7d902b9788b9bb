package ingest

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/nats-io/nats.go"

	"github.com/pulselake/pulselake/internal/stream"
	"github.com/pulselake/pulselake/internal/token"
)

// TestAuthRefusesSubjectBoundTokens connects real NATS and MQTT clients to an embedded server
// guarded by Auth: unbound tokens get their scope's permissions, subject-bound ones are refused
// (CONNACK "not authorized" over MQTT) with a log line.
func TestAuthRefusesSubjectBoundTokens(t *testing.T) {
	tokens := map[string]token.Token{
		"plk_ingest-unbound-0123456789": {ID: "ingestunbnd0", Scope: token.ScopeIngest},
		"plk_ingest-bound-0123456789":   {ID: "ingestbound0", Scope: token.ScopeIngest, Subject: "patient-1"},
		"plk_read-unbound-0123456789":   {ID: "readunbound0", Scope: token.ScopeRead},
		"plk_read-bound-0123456789":     {ID: "readbound000", Scope: token.ScopeRead, Subject: "patient-1"},
	}
	var logs bytes.Buffer
	auth := &Auth{
		Verify: func(secret string) (token.Token, error) {
			if tok, ok := tokens[secret]; ok {
				return tok, nil
			}
			return token.Token{}, token.ErrInvalid
		},
		InternalUser: "pulselake", InternalPassword: "internal-password",
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}
	srv, err := stream.StartServer(slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil)), stream.ServerOptions{
		Dir: t.TempDir(), ClientListen: "127.0.0.1:0", MQTTListen: "127.0.0.1:0", Auth: auth,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())

	for _, c := range []struct {
		secret  string
		connect bool
	}{
		{"plk_ingest-unbound-0123456789", true},
		{"plk_read-unbound-0123456789", true},
		{"plk_ingest-bound-0123456789", false},
		{"plk_read-bound-0123456789", false},
		{"plk_unknown-0123456789", false},
	} {
		t.Run(c.secret, func(t *testing.T) {
			nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("device", c.secret), nats.MaxReconnects(0))
			if c.connect != (err == nil) {
				t.Errorf("NATS connect: err = %v, want connected %v", err, c.connect)
			}
			if err == nil {
				nc.Close()
			} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(err.Error(), "Authorization Violation") {
				t.Errorf("NATS connect refused with %v, want an authorization violation", err)
			}
			mc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + srv.MQTTAddr()).
				SetClientID("dev-" + c.secret[4:12]).SetUsername("device").SetPassword(c.secret).
				SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetProtocolVersion(4))
			tk := mc.Connect()
			if !tk.WaitTimeout(10 * time.Second) {
				t.Fatal("MQTT connect: no answer in 10s")
			}
			if c.connect != (tk.Error() == nil) {
				t.Errorf("MQTT connect: err = %v, want connected %v", tk.Error(), c.connect)
			}
			if tk.Error() == nil {
				mc.Disconnect(100)
			} else if !errors.Is(tk.Error(), packets.ErrorRefusedNotAuthorised) {
				t.Errorf("MQTT connect refused with %v, want CONNACK not authorized (5)", tk.Error())
			}
		})
	}
	for _, id := range []string{"ingestbound0", "readbound000"} {
		if !strings.Contains(logs.String(), "token="+id) || !strings.Contains(logs.String(), "subject-bound") {
			t.Errorf("no log line for refused token %s:\n%s", id, logs.String())
		}
	}
}
