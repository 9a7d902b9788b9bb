package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/app"
	"github.com/pulselake/pulselake/internal/config"
	"github.com/pulselake/pulselake/internal/reading"
)

// binDir holds the binary built for the tests of this run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pulselake-bin-")
	if err != nil {
		panic(err)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildOnce builds cmd/pulselake once per test run.
var buildOnce = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "pulselake")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/pulselake").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building pulselake: %v\n%s", err, out)
	}
	return bin, nil
})

// handedOut holds every address freeAddr returned in this test run.
var handedOut sync.Map

// freeAddr returns a loopback address with a port free now and never returned before in this
// run. The port is closed again before a process binds it, and the kernel may give a port just
// closed to the next caller: a three-node test once got one port for a node's HTTP listener
// and another's MQTT listener, and waited for a node that could not start.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
	t.Fatal("no free loopback port that was not handed out before in 100 tries")
	return ""
}

// startServe starts `pulselake serve` as a separate process and waits for /readyz.
func startServe(t *testing.T, bin, dir, addr string) *exec.Cmd {
	t.Helper()
	return startServeWith(t, bin, dir, addr)
}

// startServeWith is startServe with extra command-line arguments.
func startServeWith(t *testing.T, bin, dir, addr string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--data", dir, "--http", addr, "--mqtt", "off"}, args...)...)
	cmd.Env = append(os.Environ(), "PULSELAKE_ADMIN_TOKEN="+adminToken)
	logf, _ := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cmd
			}
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, bounded by the deadline
	}
	cmd.Process.Kill()
	log, _ := os.ReadFile(logf.Name())
	t.Fatalf("serve not ready in 60s:\n%s", log)
	return nil
}

// TestKillDuringIngest kills a serve process with SIGKILL while a client streams readings,
// restarts it, and checks that every reading acknowledged before the kill is in the stream.
func TestKillDuringIngest(t *testing.T) {
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir, addr := t.TempDir(), freeAddr(t)
	srv := startServe(t, bin, dir, addr)

	var (
		mu    sync.Mutex
		acked []reading.ID
		sent  atomic.Int64
		stop  = make(chan struct{})
		done  = make(chan struct{})
	)
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(1, 2))
		client := &http.Client{Timeout: 5 * time.Second}
		for b := 0; ; b++ {
			select {
			case <-stop:
				return
			default:
			}
			var lines [][]byte
			var ids []reading.ID
			for i := 0; i < 100; i++ {
				raw, _ := genReading(rng, b*100+i, false)
				r, _ := p.Parse(raw)
				lines, ids = append(lines, raw), append(ids, r.Identity())
			}
			sent.Add(100)
			code, err := tryPost(client, "http://"+addr, lines)
			if err == nil && code == http.StatusAccepted {
				mu.Lock()
				acked = append(acked, ids...)
				mu.Unlock()
			}
		}
	}()
	// Kill once a good number of batches were acknowledged, while the client keeps sending.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 5000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // waiting for progress, bounded by the deadline
	}
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	srv.Wait()
	close(stop)
	<-done
	mu.Lock()
	want := append([]reading.ID(nil), acked...)
	mu.Unlock()
	if len(want) == 0 {
		t.Fatal("no batch was acknowledged before the kill")
	}

	srv = startServe(t, bin, dir, addr)
	defer func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
	}()
	conn, closeConn, err := app.Dial(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), dir, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer closeConn()
	got, _, _ := streamContents(t, conn)
	missing := 0
	for _, id := range want {
		if got[id] == 0 {
			missing++
		}
	}
	t.Logf("sent %d readings, %d acknowledged before SIGKILL, %d in the stream after restart", sent.Load(), len(want), len(got))
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged readings are missing after SIGKILL and restart", missing, len(want))
	}
}

func tryPost(c *http.Client, url string, lines [][]byte) (int, error) {
	var body []byte
	for _, l := range lines {
		body = append(append(body, l...), '\n')
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/readings", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}
