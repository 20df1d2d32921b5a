package daemon

import (
	"bufio"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/dpfw/dpfw/internal/ring"
)

// Streams from the workers (connection events, packet traces): each worker
// writes records into its own ring while someone listens; one pump
// goroutine per kind, running while there are listeners, drains the rings
// every millisecond and hands each record to every listener that wants it,
// through the listener's bounded queue. A listener that falls behind loses
// records, counted and reported in its stream; so does a worker's ring
// that fills.

// pumpEvery is how often a pump drains the rings.
const pumpEvery = time.Millisecond

// listenerQueue bounds one listener's records in flight.
const listenerQueue = 8192

// hub fans the records of the workers' rings out to listeners.
type hub[T any] struct {
	rings     []*ring.Ring[T]
	mu        sync.Mutex
	listeners map[*listener[T]]struct{}
	stop      chan struct{}
}

// listener is one stream.
type listener[T any] struct {
	ch   chan stamped[T]
	want func(*T) bool
	lost int // records it had no room for (guarded by hub.mu)
}

// stamped is a record with the time the pump saw it.
type stamped[T any] struct {
	at time.Time
	v  T
}

// listen registers a listener for the records want selects, and starts
// the pump (and the rings) with the first one.
func (h *hub[T]) listen(want func(*T) bool) *listener[T] {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := &listener[T]{ch: make(chan stamped[T], listenerQueue), want: want}
	if h.listeners == nil {
		h.listeners = map[*listener[T]]struct{}{}
	}
	h.listeners[l] = struct{}{}
	if len(h.listeners) == 1 {
		for _, r := range h.rings {
			r.Listen(true)
		}
		h.stop = make(chan struct{})
		go h.pump(h.stop)
	}
	return l
}

// unlisten removes a listener; the last one stops the pump.
func (h *hub[T]) unlisten(l *listener[T]) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.listeners, l)
	if len(h.listeners) == 0 && h.stop != nil {
		for _, r := range h.rings {
			r.Listen(false)
		}
		close(h.stop)
		h.stop = nil
	}
}

// pump drains the rings until stop. The listeners are taken once per
// drain, as a slice: iterating the map for every record cost more than
// delivering it.
func (h *hub[T]) pump(stop <-chan struct{}) {
	t := time.NewTicker(pumpEvery)
	defer t.Stop()
	var ls []*listener[T]
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, r := range h.rings {
			h.mu.Lock()
			ls = ls[:0]
			for l := range h.listeners {
				ls = append(ls, l)
			}
			r.Drain(func(v *T) {
				for _, l := range ls {
					if l.want != nil && !l.want(v) {
						continue
					}
					select {
					case l.ch <- stamped[T]{now, *v}:
					default:
						l.lost++
					}
				}
			})
			h.mu.Unlock()
		}
	}
}

// ringsLost sums the records the workers' rings had no room for.
func (h *hub[T]) ringsLost() uint64 {
	var n uint64
	for _, r := range h.rings {
		n += r.Lost()
	}
	return n
}

// takeLost returns and clears what l had no room for.
func (h *hub[T]) takeLost(l *listener[T]) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := l.lost
	l.lost = 0
	return n
}

// stream serves one listener over HTTP until count records (0: until the
// client goes or dpfw stops): write formats a record into bw and reports
// whether it counted (a record the stream's filter skips does not); every
// 100 ms the losses since the last report are written as a line by lost.
func (h *hub[T]) stream(w http.ResponseWriter, r *http.Request, quit <-chan struct{}, l *listener[T], count int,
	write func(bw *bufio.Writer, v *stamped[T]) bool, lost func(bw *bufio.Writer, n uint64)) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriter(w)
	flusher, _ := w.(http.Flusher)
	flush := func() {
		_ = bw.Flush()
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	seen := h.ringsLost()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for sent := 0; count == 0 || sent < count; {
		select {
		case <-r.Context().Done():
			return
		case <-quit:
			flush()
			return
		case <-tick.C:
			now := h.ringsLost()
			if n := now - seen + uint64(h.takeLost(l)); n > 0 {
				lost(bw, n)
			}
			seen = now
			flush()
		case v := <-l.ch:
			if !write(bw, &v) {
				continue
			}
			sent++
			if len(l.ch) == 0 {
				flush()
			}
		}
	}
	flush()
}

// lostLine is a stream's line for n records lost.
func lostLine(what string) func(bw *bufio.Writer, n uint64) {
	return func(bw *bufio.Writer, n uint64) {
		fmt.Fprintf(bw, "[LOST] %d %s (the workers' rings or this stream fell behind)\n", n, what)
	}
}
