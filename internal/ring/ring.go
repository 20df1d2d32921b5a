// Package ring is the bounded queue between a worker and the control side
// (connection events, packet traces): one producer that never waits, one
// consumer, and a count of what found the ring full. It is switched on by
// listeners, so that a worker does no work for records nobody reads.
package ring

import (
	"sync/atomic"

	"github.com/dpfw/dpfw/internal/nocopy"
)

// Ring holds up to a power of two of records of type T: Put by its one
// producer, Drain by its one consumer.
type Ring[T any] struct {
	noCopy nocopy.NoCopy
	// listeners > 0 turns the ring on.
	listeners  atomic.Int32
	head, tail atomic.Uint64
	lost       atomic.Uint64
	mask       uint64
	buf        []T
}

// New returns a ring of size records (rounded up to a power of two), off.
func New[T any](size int) *Ring[T] {
	n := 1
	for n < size {
		n <<= 1
	}
	return &Ring[T]{mask: uint64(n - 1), buf: make([]T, n)}
}

// Listen counts a listener in (on) or out; the ring is on while there is
// one.
func (r *Ring[T]) Listen(on bool) {
	if on {
		r.listeners.Add(1)
	} else {
		r.listeners.Add(-1)
	}
}

// On reports whether anyone listens (a nil ring: no).
func (r *Ring[T]) On() bool { return r != nil && r.listeners.Load() > 0 }

// Put adds a copy of *v, or counts it lost when the ring is full. Only the
// producer may call it; it never blocks or allocates.
func (r *Ring[T]) Put(v *T) {
	h := r.head.Load()
	if h-r.tail.Load() > r.mask {
		r.lost.Add(1)
		return
	}
	r.buf[h&r.mask] = *v
	r.head.Store(h + 1)
}

// Drain calls f with every record put since the last Drain, in order, and
// returns how many. Only the consumer may call it.
func (r *Ring[T]) Drain(f func(*T)) int {
	t, h := r.tail.Load(), r.head.Load()
	for i := t; i < h; i++ {
		f(&r.buf[i&r.mask])
	}
	r.tail.Store(h)
	return int(h - t)
}

// Lost is how many records found the ring full.
func (r *Ring[T]) Lost() uint64 { return r.lost.Load() }

// Len is the ring's capacity in records.
func (r *Ring[T]) Len() int { return len(r.buf) }
