package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket is the KV bucket of pulselake's leases: one key per job that must run on one
// process at a time among those sharing the stream (the lake writer, the cluster's
// processors).
const LeaseBucket = "pulselake_leases"

// DefaultLeaseTTL is how long a lease outlives a holder that stopped renewing it.
const DefaultLeaseTTL = 30 * time.Second

// LeaseOptions configures a lease.
type LeaseOptions struct {
	// Key names the job (one key per job).
	Key string
	// TTL is how long the lease outlives its last renewal (default DefaultLeaseTTL): a
	// holder that was killed or cut off loses it after TTL and a standby takes over. The
	// holder renews every TTL/3, and gives up (Lost) when it could not renew for 2/3 TTL,
	// so that it stops before anybody else can take over.
	TTL time.Duration
	// Stop ends a wait for the lease (as ctx does, but AcquireLease then returns nil, nil).
	Stop <-chan struct{}
}

// Lease is held by one process at a time: a KV key created by its holder and renewed with
// compare-and-set on its revision. The bucket's TTL makes the key vanish when renewals stop.
type Lease struct {
	kv   jetstream.KeyValue
	log  *slog.Logger
	key  string
	id   string
	ttl  time.Duration
	rev  uint64
	lost chan struct{}
}

// AcquireLease waits until this process holds the lease o.Key, or ctx ends (error) or
// o.Stop closes (nil, nil).
func (c *Conn) AcquireLease(ctx context.Context, log *slog.Logger, o LeaseOptions) (*Lease, error) {
	if o.TTL <= 0 {
		o.TTL = DefaultLeaseTTL
	}
	kv, err := c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: LeaseBucket, Description: "pulselake leases (the active lake writer, the cluster's processors)",
		TTL: o.TTL, Replicas: c.Replicas(), Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("opening the lease bucket: %w", err)
	}
	host, _ := os.Hostname()
	l := &Lease{kv: kv, log: log, key: o.Key, ttl: o.TTL, lost: make(chan struct{}),
		id: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())}
	logged := false
	for {
		rev, err := kv.Create(ctx, o.Key, []byte(l.id))
		if err == nil {
			l.rev = rev
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			// The bucket may be between leaders (a node just died): try again shortly.
			log.Warn("taking a lease failed; trying again", "lease", o.Key, "err", err)
		} else if !logged {
			if holder, _ := kv.Get(ctx, o.Key); holder != nil {
				log.Info("another process holds the lease; standing by", "lease", o.Key, "holder", string(holder.Value()))
			}
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-o.Stop:
			return nil, nil
		case <-time.After(o.TTL / 6):
		}
	}
}

// ID identifies the holder (hostname/pid/start time).
func (l *Lease) ID() string { return l.id }

// Lost is closed when the holder could not renew the lease in time: it must stop the job.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Keep renews the lease until ctx ends; it closes Lost when renewals failed for 2/3 of
// the TTL (or the key was taken by another holder).
func (l *Lease) Keep(ctx context.Context) {
	renew := l.ttl / 3
	t := time.NewTicker(renew)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, renew/2)
		rev, err := l.kv.Update(rctx, l.key, []byte(l.id), l.rev)
		cancel()
		if err == nil {
			l.rev, lastOK = rev, time.Now()
			t.Reset(renew)
			continue
		}
		if ctx.Err() != nil {
			return
		}
		wrongRev := errors.Is(err, jetstream.ErrKeyRevisionMismatch)
		if wrongRev {
			// A renewal whose answer was lost leaves the key ours at a newer revision.
			gctx, cancel := context.WithTimeout(ctx, renew/2)
			e, gerr := l.kv.Get(gctx, l.key)
			cancel()
			if gerr == nil && string(e.Value()) == l.id {
				l.rev, wrongRev = e.Revision(), false
				t.Reset(time.Second)
				continue
			}
		}
		if wrongRev || time.Since(lastOK) >= 2*renew {
			l.log.Error("lost a lease: it could not be renewed in time; stopping the job", "lease", l.key, "err", err)
			close(l.lost)
			return
		}
		l.log.Warn("renewing a lease failed; trying again", "lease", l.key, "err", err)
		t.Reset(time.Second)
	}
}

// Release gives the lease up so that a standby takes over at once.
func (l *Lease) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = l.kv.Delete(ctx, l.key, jetstream.LastRevision(l.rev))
}
