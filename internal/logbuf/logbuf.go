// Package logbuf is an in-memory log destination that several goroutines may write while
// another reads it: for tests that check what a server or process logged.
package logbuf

import (
	"bytes"
	"sync"
)

// Buffer collects what is written to it; its zero value is ready to use and it is safe for
// concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
