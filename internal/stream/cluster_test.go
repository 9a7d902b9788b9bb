package stream

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/pulselake/pulselake/internal/reading"
)

// startCluster starts n embedded servers joined by routes on loopback (no route security),
// each in its own directory, and returns them once JetStream has a leader.
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	srvs, _ := startSecuredCluster(t, n, io.Discard, func(int, *ClusterOptions) {})
	return srvs
}

func connectTo(t *testing.T, srv *Server, replicas int) *Conn {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := Connect(context.Background(), log, ConnOptions{Server: srv, Name: "test", Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return conn
}

// TestClusterStreamSurvivesNodeLoss: on three clustered servers the ingest stream and a KV
// bucket have three replicas; after the stream leader's node stops, publishing goes on through
// the survivors and every acknowledged batch is readable on them.
func TestClusterStreamSurvivesNodeLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three NATS servers (-short)")
	}
	srvs := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := connectTo(t, srvs[0], 3)
	if err := conn.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := conn.KV(ctx, "test_bucket", "test")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := kv.Status(ctx); err != nil || st.Values() != 0 {
		t.Fatalf("bucket status: %v", err)
	}
	reg, _ := reading.NewRegistry()
	p := reading.NewParser(reg)
	if _, err := conn.Publish(ctx, testBatch(t, p, 3)); err != nil {
		t.Fatal(err)
	}
	s, err := conn.JS.Stream(ctx, IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream replicas: config %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	// Stop the node leading the stream (not the one we are connected to, whose loss would
	// only take our connection with it).
	leader := -1
	for i, srv := range srvs {
		if srv.NATS().Name() == info.Cluster.Leader {
			leader = i
		}
	}
	victim := leader
	if victim <= 0 {
		victim = 1
	}
	srvs[victim].Shutdown(ctx)

	// Publishing goes on once a new leader is elected (a few seconds).
	deadline := time.Now().Add(30 * time.Second)
	for {
		b := testBatch(t, p, 4)
		_, err := conn.Publish(ctx, b)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing after losing node %d: %v", victim, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	other := 3 - victim // the survivor we are not connected to
	conn2 := connectTo(t, srvs[other], 3)
	s2, err := conn2.JS.Stream(ctx, IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		info, err := s2.Info(ctx)
		if err == nil && info.State.Msgs >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("survivor %d sees %v messages (err %v), want the 2 acknowledged", other, info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestLeaseMovesWhenHolderStops: a lease whose holder stops renewing (killed) is taken by a
// standby after the TTL, and not before; while renewed it never moves.
func TestLeaseMovesWhenHolderStops(t *testing.T) {
	_, conn := startTest(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = 6 * time.Second
	held, err := conn.AcquireLease(ctx, log, LeaseOptions{Key: "job", TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	keepCtx, stopKeeping := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() { defer close(kept); held.Keep(keepCtx) }()

	got := make(chan *Lease, 1)
	start := time.Now()
	go func() {
		l, err := conn.AcquireLease(ctx, log, LeaseOptions{Key: "job", TTL: ttl})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	select { // renewed: the standby waits beyond the TTL
	case <-got:
		t.Fatalf("the standby took a renewed lease after %s", time.Since(start))
	case <-held.Lost():
		t.Fatal("the holder lost a lease it renewed")
	case <-time.After(ttl + 3*time.Second):
	}
	stopKeeping() // the holder dies: no release, no renewal
	<-kept
	dead := time.Now()
	select {
	case l := <-got:
		if l == nil || l.ID() == held.ID() {
			t.Fatalf("standby got %v", l)
		}
		if waited := time.Since(dead); waited > ttl+2*time.Second {
			t.Errorf("standby took over %s after the holder died, want at most the TTL %s (+ its poll)", waited, ttl)
		}
	case <-time.After(3 * ttl):
		t.Fatal("the standby never took over the dead holder's lease")
	}
}
