package stream

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// TestStartServerMQTTPortInUse starts the server on an MQTT address another listener holds: it
// fails at once naming the address and the setting, instead of waiting ReadyTimeout for a server
// that only logged the problem.
func TestStartServerMQTTPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	srv, err := StartServer(slog.New(slog.NewTextHandler(io.Discard, nil)), ServerOptions{Dir: t.TempDir(), MQTTListen: l.Addr().String()})
	if err == nil {
		srv.Shutdown(context.Background())
		t.Fatal("the server started on an MQTT address in use")
	}
	if !strings.Contains(err.Error(), "MQTT listen address "+l.Addr().String()+" is not available") || !strings.Contains(err.Error(), "mqtt.listen") {
		t.Errorf("error %q does not name the address and the setting", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("StartServer took %s to fail", d)
	}
}
