package lake

import (
	"context"
	"errors"

	"github.com/pulselake/pulselake/internal/stream"
)

// leaseKey is the lake writer's lease in stream.LeaseBucket.
const leaseKey = "lake-writer"

// ErrLeaseLost stops a writer whose lease could not be renewed in time; another writer
// may have taken over. Run may be called again: it stands by for the lease.
var ErrLeaseLost = errors.New("lost the lake writer lease (another writer may have taken over)")

// acquireLease waits until this writer holds the lease (or ctx or stop ends the wait: nil).
// The lease makes one lake writer per warehouse the active one when several serve processes
// share a NATS cluster: the watermark protocol needs one writer consuming in stream order.
// A holder that dies keeps it at most Options.LeaseTTL.
func (w *Writer) acquireLease(ctx context.Context) (*stream.Lease, error) {
	l, err := w.o.Conn.AcquireLease(ctx, w.log, stream.LeaseOptions{Key: leaseKey, TTL: w.o.LeaseTTL, Stop: w.stop})
	if err != nil || l == nil {
		return nil, err
	}
	w.log.Info("this process is the active lake writer", "lease", l.ID())
	return l, nil
}
