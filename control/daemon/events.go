package daemon

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dpfw/dpfw/conntrack"
)

// Connection events (conntrack -E) come from each worker's tracker ring
// through a hub (hub.go).

// eventsHub returns the hub of the trackers' event rings.
func (d *Daemon) eventsHub() *hub[conntrack.Event] { return &d.events }

// eventsLost sums the events the workers' rings had no room for.
func (d *Daemon) eventsLost() uint64 { return d.eventsHub().ringsLost() }

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
	h := d.eventsHub()
	l := h.listen(nil)
	defer h.unlisten(l)
	var line []byte
	h.stream(w, r, d.quit, l, count, func(bw *bufio.Writer, e *stamped[conntrack.Event]) bool {
		if e.v.Type&types == 0 || !f.Match(&e.v.Entry) {
			return false
		}
		line = writeEvent(bw, e, asJSON, stamp, line)
		return true
	}, lostLine("events"))
}

// writeEvent writes one event as conntrack -E prints it (stamp: with -o
// timestamp's "[seconds.micros]") or as JSON, reusing line.
func writeEvent(bw *bufio.Writer, e *stamped[conntrack.Event], asJSON, stamp bool, line []byte) []byte {
	if asJSON {
		_ = json.NewEncoder(bw).Encode(struct {
			Time  time.Time           `json:"time"`
			Type  string              `json:"type"`
			Entry conntrack.EntryJSON `json:"entry"`
			Line  string              `json:"line"`
		}{e.at, e.v.Type.String(), e.v.Entry.JSON(), string(e.v.AppendText(nil))})
		return line
	}
	b := line[:0]
	if stamp {
		b = append(b, '[')
		b = strconv.AppendInt(b, e.at.Unix(), 10)
		b = append(b, '.')
		b = append(b, fmt.Sprintf("%06d", e.at.Nanosecond()/1000)...)
		b = append(b, "]\t"...)
	}
	b = append(e.v.AppendText(b), '\n')
	_, _ = bw.Write(b)
	return b
}
