package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dpfw/dpfw/conntrack"
)

// Connection events (conntrack -E): each worker's tracker writes its events
// into its own ring while someone listens; one pump goroutine, running
// while there are listeners, drains the rings every millisecond and hands
// each event to every listener's bounded queue. A listener that falls
// behind loses events, counted and reported in its stream; so does a
// worker's ring that fills.

// eventPumpEvery is how often the pump drains the rings.
const eventPumpEvery = time.Millisecond

// listenerQueue bounds one listener's events in flight.
const listenerQueue = 8192

// eventHub fans the workers' events out to the listeners.
type eventHub struct {
	mu        sync.Mutex
	listeners map[*listener]struct{}
	stop      chan struct{}
}

// listener is one events stream.
type listener struct {
	ch   chan stamped
	lost int // events it had no room for (guarded by eventHub.mu)
}

// stamped is an event with the time the pump saw it.
type stamped struct {
	at time.Time
	ev conntrack.Event
}

// listen registers a listener and starts the pump with the first one.
func (d *Daemon) listen() *listener {
	h := &d.events
	h.mu.Lock()
	defer h.mu.Unlock()
	l := &listener{ch: make(chan stamped, listenerQueue)}
	if h.listeners == nil {
		h.listeners = map[*listener]struct{}{}
	}
	h.listeners[l] = struct{}{}
	if len(h.listeners) == 1 {
		for _, tr := range d.trackers {
			tr.Events().Listen(true)
		}
		h.stop = make(chan struct{})
		go d.pump(h.stop)
	}
	return l
}

// unlisten removes a listener; the last one stops the pump.
func (d *Daemon) unlisten(l *listener) {
	h := &d.events
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.listeners, l)
	if len(h.listeners) == 0 && h.stop != nil {
		for _, tr := range d.trackers {
			tr.Events().Listen(false)
		}
		close(h.stop)
		h.stop = nil
	}
}

// pump drains the rings until stop.
func (d *Daemon) pump(stop <-chan struct{}) {
	t := time.NewTicker(eventPumpEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := time.Now()
		h := &d.events
		for _, tr := range d.trackers {
			h.mu.Lock()
			tr.Events().Drain(func(e *conntrack.Event) {
				for l := range h.listeners {
					select {
					case l.ch <- stamped{now, *e}:
					default:
						l.lost++
					}
				}
			})
			h.mu.Unlock()
		}
	}
}

// eventsLost sums the events the workers' rings had no room for.
func (d *Daemon) eventsLost() uint64 {
	var n uint64
	for _, tr := range d.trackers {
		n += tr.Events().Lost()
	}
	return n
}

// parseEventTypes reads -e NEW,UPDATE,DESTROY (all when empty).
func parseEventTypes(v string) (conntrack.EventType, error) {
	if v == "" {
		return conntrack.EventNew | conntrack.EventUpdate | conntrack.EventDestroy, nil
	}
	var m conntrack.EventType
	for _, s := range strings.Split(strings.ToUpper(v), ",") {
		switch s {
		case "NEW":
			m |= conntrack.EventNew
		case "UPDATE":
			m |= conntrack.EventUpdate
		case "DESTROY":
			m |= conntrack.EventDestroy
		case "ALL":
			m |= conntrack.EventNew | conntrack.EventUpdate | conntrack.EventDestroy
		default:
			return 0, fmt.Errorf("event %q: want NEW, UPDATE, DESTROY or ALL (comma-separated)", s)
		}
	}
	return m, nil
}

// apiEvents streams connection events (GET /api/conntrack/events): one
// conntrack -E line per event (format=json: one JSON object), with the
// conntrack list filters, the event types (events=NEW,UPDATE,DESTROY),
// timestamps (timestamp=1: conntrack -o timestamp's "[seconds.micros]"),
// and at most count events (0: until the client goes). Lost events are
// reported in the stream as they are noticed.
func (d *Daemon) apiEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := ParseConnFilter(q)
	if err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	types, err := parseEventTypes(q.Get("events"))
	if err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	count, _ := strconv.Atoi(q.Get("count"))
	asJSON, stamp := q.Get("format") == "json", q.Get("timestamp") == "1"
	l := d.listen()
	defer d.unlisten(l)
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
	s := eventStream{d: d, l: l, bw: bw, asJSON: asJSON, stamp: stamp, lost: d.eventsLost()}
	sent := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for count == 0 || sent < count {
		select {
		case <-r.Context().Done():
			return
		case <-d.quit:
			flush()
			return
		case <-tick.C:
			s.reportLost()
			flush()
		case e := <-l.ch:
			if e.ev.Type&types == 0 || !f.Match(&e.ev.Entry) {
				continue
			}
			s.write(&e)
			sent++
			if len(l.ch) == 0 {
				flush()
			}
		}
	}
	flush()
}

// eventStream writes one listener's events.
type eventStream struct {
	d             *Daemon
	l             *listener
	bw            *bufio.Writer
	asJSON, stamp bool
	lost          uint64 // the rings' losses when last reported
	line          []byte
}

// write writes one event.
func (s *eventStream) write(e *stamped) {
	if s.asJSON {
		_ = json.NewEncoder(s.bw).Encode(struct {
			Time  time.Time           `json:"time"`
			Type  string              `json:"type"`
			Entry conntrack.EntryJSON `json:"entry"`
			Line  string              `json:"line"`
		}{e.at, e.ev.Type.String(), e.ev.Entry.JSON(), string(e.ev.AppendText(nil))})
		return
	}
	b := s.line[:0]
	if s.stamp {
		b = append(b, '[')
		b = strconv.AppendInt(b, e.at.Unix(), 10)
		b = append(b, '.')
		us := e.at.Nanosecond() / 1000
		b = append(b, fmt.Sprintf("%06d", us)...)
		b = append(b, "]\t"...)
	}
	b = append(e.ev.AppendText(b), '\n')
	_, _ = s.bw.Write(b)
	s.line = b
}

// reportLost writes a line for events lost since the last report, in the
// workers' rings or in this listener's queue.
func (s *eventStream) reportLost() {
	rings := s.d.eventsLost()
	s.d.events.mu.Lock()
	mine := s.l.lost
	s.l.lost = 0
	s.d.events.mu.Unlock()
	if n := rings - s.lost + uint64(mine); n > 0 {
		fmt.Fprintf(s.bw, "[LOST] %d events (the event rings or this stream fell behind)\n", n)
	}
	s.lost = rings
}
