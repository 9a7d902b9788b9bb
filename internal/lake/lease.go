package lake

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Lease timing: the holder renews every leaseRenew; a holder that stopped renewing (killed)
// loses the lease after leaseTTL, and a standby takes over.
const (
	leaseBucket = "pulselake_leases"
	leaseKey    = "lake-writer"
	leaseTTL    = 30 * time.Second
	leaseRenew  = 10 * time.Second
)

// errLeaseLost stops a writer whose lease was not renewed in time.
var errLeaseLost = errors.New("lost the lake writer lease (another writer may have taken over)")

// lease makes one lake writer per warehouse the active one when several serve processes
// share a NATS cluster: the watermark protocol needs one writer consuming in stream order.
type lease struct {
	kv   jetstream.KeyValue
	id   string
	rev  uint64
	lost chan struct{}
}

// acquireLease waits until this writer holds the lease (or ctx or stop ends the wait).
func (w *Writer) acquireLease(ctx context.Context) (*lease, error) {
	kv, err := w.o.Conn.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: leaseBucket, Description: "pulselake leases (the active lake writer)",
		TTL: leaseTTL, Replicas: w.o.Conn.Replicas(), Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the lease bucket: %w", err)
	}
	host, _ := os.Hostname()
	l := &lease{kv: kv, id: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano()), lost: make(chan struct{})}
	logged := false
	for {
		rev, err := kv.Create(ctx, leaseKey, []byte(l.id))
		if err == nil {
			l.rev = rev
			w.log.Info("this process is the active lake writer", "lease", l.id)
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("taking the lake writer lease: %w", err)
		}
		if !logged {
			holder, _ := kv.Get(ctx, leaseKey)
			if holder != nil {
				w.log.Info("another process is the active lake writer; standing by", "holder", string(holder.Value()))
			}
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.stop:
			return nil, nil
		case <-time.After(leaseRenew / 2):
		}
	}
}

// keep renews the lease until ctx ends; it closes l.lost when a renewal fails.
func (l *lease) keep(ctx context.Context) {
	t := time.NewTicker(leaseRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, leaseRenew)
			rev, err := l.kv.Update(rctx, leaseKey, []byte(l.id), l.rev)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					close(l.lost)
				}
				return
			}
			l.rev = rev
		}
	}
}

// release gives the lease up so a standby takes over at once.
func (l *lease) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(l.rev))
}
