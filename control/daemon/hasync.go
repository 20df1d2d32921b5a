package daemon

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/hasync"
	"github.com/dpfw/dpfw/control/hasync/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Connection-state sync (sync:): one goroutine drains the workers' sync
// rings (conntrack.SyncRecord, one cache line per event) every
// millisecond, sends the sync link's connection events to the peer,
// batched into datagrams, and answers the peer's resync requests with a
// dump of the tables; another receives the peer's messages into the
// external cache. The workers never wait for either: an event that finds
// its worker's sync ring full is lost, counted, and starts a dump.

// syncPump is how often the sync goroutine drains the workers' sync
// rings: at a million events a second a ring (SyncRingSize) holds 16 ms.
const syncPump = time.Millisecond

// syncTick is how often queued messages go out, and heartbeats are due.
const syncTick = 10 * time.Millisecond

// minDumpGap spaces the dumps that lost events start: under a load that
// loses events, a dump at most this often.
const minDumpGap = 5 * time.Second

// syncState is the sync's, for the API and metrics (nil: sync is off).
type syncState struct {
	node    *hasync.Node
	zone    uint16
	link    string
	started time.Time
	// lastDump is when the last dump ended (unix ns), dumping whether one
	// runs.
	lastDump atomic.Int64
	dumping  atomic.Bool
	roles    roles
	// co merges each connection's events within a tick (the sync
	// goroutine's); merged counts them for the metrics.
	co     *hasync.Coalescer
	merged atomic.Uint64
	// rings are the workers' sync rings; take is offer as a func value,
	// made once.
	rings []*conntrack.SyncRing
	take  func(*conntrack.SyncRecord)
	// ready is set once the start-up resync is in (syncready.go).
	ready atomic.Bool
}

// coalesceMax flushes the coalescer before a tick when this many
// connections wait.
const coalesceMax = 65536

// offer takes one event of the sync link into the coalescer.
func (st *syncState) offer(r *conntrack.SyncRecord) {
	if r.Orig.Zone != st.zone {
		return
	}
	st.co.Add(r)
	if st.co.Len() >= coalesceMax {
		st.flushEvents()
	}
}

// pump takes what the workers' sync rings hold.
func (st *syncState) pump() {
	for _, r := range st.rings {
		r.Drain(st.take)
	}
}

// ringsLost sums the events the sync rings had no room for.
func (st *syncState) ringsLost() uint64 {
	var n uint64
	for _, r := range st.rings {
		n += r.Lost()
	}
	return n
}

// listen turns the workers' sync rings on (or off).
func (st *syncState) listen(on bool) {
	for _, r := range st.rings {
		r.Listen(on)
	}
}

// flushEvents sends what the coalescer holds.
func (st *syncState) flushEvents() {
	st.co.Flush(st.node)
	st.merged.Store(st.co.Merged) // cumulative
}

// startSync starts the sync when sync.mode is set.
func (d *Daemon) startSync() error {
	s := &d.Config.Sync
	if !s.Enabled() {
		return nil
	}
	zone, link := d.syncLink()
	maxEntries := s.MaxEntries
	if maxEntries == 0 {
		maxEntries = d.Config.Conntrack.Capacity * len(d.Config.Workers.CPUs)
	}
	var key []byte
	if s.KeyFile != "" {
		k, err := config.LoadSyncKey(s.KeyFile)
		if err != nil {
			return fmt.Errorf("sync.key_file: %w", err)
		}
		key = k
	}
	st := &syncState{zone: zone, link: link, started: time.Now(), co: hasync.NewCoalescer()}
	st.take = st.offer
	for _, tr := range d.trackers {
		st.rings = append(st.rings, tr.SyncEvents())
	}
	n, err := hasync.New(hasync.Config{Mode: s.Mode, Window: s.Window, ResendQueue: s.ResendQueue, Local: netip.MustParseAddrPort(s.Local), Peer: netip.MustParseAddrPort(s.Peer), Group: group(s.Multicast), Key: key,
		Interface: s.Interface, Netns: s.Netns, Zone: zone, MaxEntries: maxEntries, Datagram: s.MTU - 28, Log: d.log,
		OnConn: st.onPeerConn, OnExpect: st.onPeerExpect})
	if err != nil {
		return err
	}
	st.node = n
	d.initRoles(st)
	d.sync = st
	st.listen(true)
	go n.Receive()
	go d.runSync(st)
	d.log.Info("connection-state sync (conntrackd's protocol)", "mode", s.Mode, "role", s.Role, "local", s.Local, "peer", s.Peer, "multicast", s.Multicast, "authenticated", key != nil, "link", link,
		"interface", s.Interface, "netns", s.Netns, "max_entries", maxEntries)
	return nil
}

// group is sync.multicast's group (none if unset).
func group(s string) netip.AddrPort {
	if s == "" {
		return netip.AddrPort{}
	}
	return netip.MustParseAddrPort(s)
}

// syncLink is the zone and name of the link whose connections sync.
func (d *Daemon) syncLink() (uint16, string) {
	for i, l := range d.Config.Links {
		if l.Name == d.Config.Sync.Link {
			return uint16(i), l.Name
		}
	}
	if len(d.Config.Links) == 0 {
		return 0, ""
	}
	return 0, d.Config.Links[0].Name
}

// runSync sends events, heartbeats and dumps until dpfw stops.
func (d *Daemon) runSync(st *syncState) {
	n := st.node
	defer func() {
		st.listen(false)
		st.pump()
		st.flushEvents()
		n.Flush()
		n.Close()
	}()
	tick := time.NewTicker(syncTick)
	defer tick.Stop()
	pump := time.NewTicker(syncPump)
	defer pump.Stop()
	n.RequestResync()
	ready := readiness{asked: time.Now()}
	if d.Config.Sync.ReadyTimeout == 0 {
		st.ready.Store(true)
		close(d.syncReady)
	}
	var expects *time.Ticker
	if d.Config.Conntrack.FTP.Enabled {
		expects = time.NewTicker(expectPoll)
		defer expects.Stop()
	}
	sent := map[expectKey]conntrack.Expectation{}
	seen, overflow := st.ringsLost(), uint64(0)
	wantDump := false
	for {
		select {
		case <-d.quit:
			return
		case <-pump.C:
			st.pump()
		case <-n.ResyncRequests():
			wantDump = true
		case <-tickC(expects):
			d.syncExpectations(st, sent)
		case <-tick.C:
			st.pump()
			st.flushEvents()
			n.Tick()
			d.syncReadyCheck(st, &ready)
			d.watchPeer(st, n)
			now := st.ringsLost()
			if lost := now - seen; lost > 0 {
				n.Stats.EventsLost.Add(lost)
				wantDump = true
			}
			seen = now
			if o := n.Stats.ResendOverflow.Load(); o != overflow {
				overflow, wantDump = o, true // FTFW can no longer resend what it forgot
			}
			if r := d.Config.Sync.Refresh; r > 0 && time.Since(time.Unix(0, max(st.lastDump.Load(), st.started.UnixNano()))) >= r {
				wantDump = true // the peer's timeouts, refreshed
			}
		}
		if wantDump && time.Since(time.Unix(0, st.lastDump.Load())) >= minDumpGap {
			wantDump = false
			d.syncDump(st)
		}
	}
}

// expectPoll is how often the workers' FTP expectations are compared with
// what the peer was told: an announced data connection reaches the peer
// within it (a client opens it a round trip after the announcement).
const expectPoll = 50 * time.Millisecond

// expectKey identifies an expectation sent to the peer.
type expectKey struct {
	src, dst [16]byte
	dport    uint16
	master   conntrack.Tuple
}

func tickC(t *time.Ticker) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// syncExpectations tells the peer of new expectations on the sync link,
// and of those gone (opened or expired).
func (d *Daemon) syncExpectations(st *syncState, sent map[expectKey]conntrack.Expectation) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	xs, err := d.Expectations(ctx)
	if err != nil {
		return
	}
	now := map[expectKey]bool{}
	for i := range xs {
		x := &xs[i]
		if x.Zone != st.zone || x.Master.Family == 0 {
			continue
		}
		k := expectKey{x.Src, x.Dst, x.DstPort, x.Master}
		now[k] = true
		if _, ok := sent[k]; !ok {
			st.node.OfferExpect(wire.ExpNew, x)
			sent[k] = *x
		}
	}
	for k, x := range sent {
		if !now[k] {
			st.node.OfferExpect(wire.ExpDelete, &x)
			delete(sent, k)
		}
	}
	st.node.Flush()
}

// syncDump sends every connection of the sync link to the peer, at most
// sync.dump_rate a second, serving events between chunks.
func (d *Daemon) syncDump(st *syncState) {
	n := st.node
	st.dumping.Store(true)
	defer func() {
		st.dumping.Store(false)
		st.lastDump.Store(time.Now().UnixNano())
	}()
	n.Stats.ResyncsServed.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), d.listTimeout())
	defer cancel()
	rate := float64(d.Config.Sync.DumpRate)
	start, sent := time.Now(), 0
	all := ConnFilter{Proto: -1, Orig: TupleFilter{SPort: -1, DPort: -1}, Reply: TupleFilter{SPort: -1, DPort: -1}}
	_, err := d.Conntrack(ctx, all, false, math.MaxInt, func(es []conntrack.Entry) error {
		for i := range es {
			if es[i].Orig.Zone == st.zone {
				n.OfferEntry(wire.CTNew, &es[i])
				sent++
			}
		}
		n.Flush()
		due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
		d.syncServe(st, time.Until(due))
		return ctx.Err()
	})
	if err == nil && d.Config.Conntrack.FTP.Enabled {
		xs, xerr := d.Expectations(ctx)
		for i := range xs {
			if xs[i].Zone == st.zone && xs[i].Master.Family != 0 {
				n.OfferExpect(wire.ExpNew, &xs[i])
			}
		}
		err = xerr
	}
	n.Flush()
	if err != nil {
		d.log.Warn("sync: dumping the connections to the peer", "err", err, "sent", sent)
		return
	}
	d.log.Info("sync: dumped the connections to the peer", "connections", sent, "took", time.Since(start).Round(time.Millisecond))
}

// syncServe sends the events that arrive for dur (at least once).
func (d *Daemon) syncServe(st *syncState, dur time.Duration) {
	end := time.After(max(dur, 0))
	pump := time.NewTicker(syncPump)
	defer pump.Stop()
	for {
		select {
		case <-pump.C:
			st.pump()
		case <-end:
			st.pump()
			st.flushEvents()
			st.node.Tick()
			return
		case <-d.quit:
			return
		}
	}
}

// SyncStatus is what dpfw ha status shows.
type SyncStatus struct {
	Mode        string            `json:"mode"`
	Role        string            `json:"role"`
	Standby     bool              `json:"standby"`
	Promoting   bool              `json:"promoting"`
	Local       string            `json:"local"`
	Peer        string            `json:"peer"`
	Multicast   string            `json:"multicast,omitempty"`
	Link        string            `json:"link"`
	PeerSeen    *time.Time        `json:"peer_last_message,omitempty"`
	PeerAgo     string            `json:"peer_last_message_ago,omitempty"`
	External    int               `json:"external_entries"`
	Dumping     bool              `json:"dumping"`
	Ready       bool              `json:"ready"`
	ResendQueue int               `json:"resend_queue"`
	Handshake   string            `json:"handshake"`
	Counters    map[string]uint64 `json:"counters"`
	Malformed   map[string]uint64 `json:"malformed"`
	Refused     map[string]uint64 `json:"refused"`
	UptimeSince time.Time         `json:"since"`
}

// SyncStatus reports the sync, or false when it is off.
func (d *Daemon) SyncStatus() (SyncStatus, bool) {
	st := d.sync
	if st == nil {
		return SyncStatus{}, false
	}
	n, s := st.node, &d.Config.Sync
	out := SyncStatus{Mode: s.Mode, Role: st.roles.get(), Standby: d.standby.Load(), Promoting: st.roles.promoting.Load(), Local: s.Local, Peer: s.Peer, Multicast: s.Multicast, Link: st.link, External: n.External.Len(),
		Dumping: st.dumping.Load(), Ready: st.ready.Load(), UptimeSince: st.started, Counters: map[string]uint64{},
		Malformed: map[string]uint64{}, Refused: map[string]uint64{}}
	if t := n.PeerSeen(); !t.IsZero() {
		out.PeerSeen, out.PeerAgo = &t, time.Since(t).Round(time.Millisecond).String()
	}
	out.ResendQueue = n.ResendQueueLen()
	switch ours, peers := n.Handshaken(); {
	case s.Mode != "ftfw":
		out.Handshake = "none (notrack)"
	case ours && peers:
		out.Handshake = "done"
	case ours:
		out.Handshake = "waiting for the peer's"
	default:
		out.Handshake = "waiting for the peer's answer"
	}
	for _, c := range syncCounters(st) {
		out.Counters[c.name] = c.v.Load()
	}
	for i, name := range hasync.MalformedNames {
		out.Malformed[name] = n.Stats.Malformed[i].Load()
	}
	for i, name := range hasync.RefusedNames {
		out.Refused[name] = n.Stats.Refused[i].Load()
	}
	return out, true
}

// syncCounter is one of the sync's counters, defined once for the status
// and the metrics.
type syncCounter struct {
	name, help string
	v          *atomic.Uint64
}

func syncCounters(st *syncState) []syncCounter {
	s, r := &st.node.Stats, &st.roles
	return []syncCounter{
		{"promotions", "Promotions of this node from backup to active.", &r.promotions},
		{"events_merged", "Connection events merged into another of the same connection within a send interval (not sent on their own).", &st.merged},
		{"installed", "The peer's connections installed into the tables (promotion, active-active).", &r.installed},
		{"install_failed", "The peer's connections the tables refused (full, no TCP state).", &r.installFailed},
		{"install_lost", "The peer's connections active-active had no room to queue for installing.", &r.installLost},
		{"messages_sent", "Sync messages sent to the peer.", &s.MsgsSent},
		{"bytes_sent", "Bytes of sync messages sent (UDP payload).", &s.BytesSent},
		{"datagrams_sent", "Sync datagrams sent.", &s.Datagrams},
		{"send_errors", "Sync datagrams the socket refused (is the sync link up?).", &s.SendErrors},
		{"messages_received", "Sync messages received from the peer.", &s.MsgsRecv},
		{"bytes_received", "Bytes of sync datagrams received from the peer.", &s.BytesRecv},
		{"foreign_datagrams", "Datagrams on the sync port from an address other than the peer's (dropped).", &s.Foreign},
		{"auth_bad", "Datagrams refused for a missing or wrong MAC (sync.key_file).", &s.AuthBad},
		{"auth_stale", "Authenticated datagrams refused as replayed, reordered, or too far from this node's clock (sync.key_file).", &s.AuthStale},
		{"messages_lost", "Messages the peer sent that never arrived (gaps in its sequence numbers).", &s.SeqLost},
		{"messages_late", "Messages that arrived late or twice.", &s.SeqBefore},
		{"resyncs_requested", "Dumps this node asked its peer for (at start).", &s.ResyncsAsked},
		{"dumps_sent", "Dumps of this node's connections sent to the peer (its resync requests, lost events).", &s.ResyncsServed},
		{"events_lost", "Connection events the sync could not send (a worker's sync ring full); each starts a dump.", &s.EventsLost},
		{"acks_sent", "FTFW acknowledgements sent to the peer.", &s.AcksSent},
		{"nacks_sent", "FTFW NACKs sent: gaps in the peer's sequence numbers.", &s.NacksSent},
		{"messages_resent", "FTFW messages sent again (the peer NACKed them, or restarted).", &s.Resent},
		{"resend_overflow", "FTFW messages forgotten unacknowledged for room in sync.resend_queue (each starts a dump).", &s.ResendOverflow},
		{"peer_restarts", "FTFW HELLOs from the peer that started its sequence numbers afresh.", &s.PeerRestarts},
	}
}

// SyncCollectors are the sync's metrics (none when it is off).
func (d *Daemon) SyncCollectors() []prometheus.Collector {
	st := d.sync
	if st == nil {
		return nil
	}
	n := st.node
	var out []prometheus.Collector
	for _, c := range syncCounters(st) {
		v := c.v
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dpfw", Subsystem: "sync", Name: c.name + "_total", Help: c.help},
			func() float64 { return float64(v.Load()) }))
	}
	for i, name := range hasync.MalformedNames {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dpfw", Subsystem: "sync", Name: "malformed_total",
			Help: "Sync messages conntrackd would count as malformed, by reason.", ConstLabels: prometheus.Labels{"reason": name}},
			func() float64 { return float64(n.Stats.Malformed[i].Load()) }))
	}
	for i, name := range hasync.RefusedNames {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dpfw", Subsystem: "sync", Name: "refused_total",
			Help: "The peer's connections not taken, by reason (nat, tuple, tcp_state, cache_full).", ConstLabels: prometheus.Labels{"reason": name}},
			func() float64 { return float64(n.Stats.Refused[i].Load()) }))
	}
	out = append(out,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dpfw", Subsystem: "sync", Name: "standby",
			Help: "1 while this node is a backup that forwards nothing."}, func() float64 {
			if d.standby.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dpfw", Subsystem: "sync", Name: "resend_queue",
			Help: "FTFW messages waiting for the peer's acknowledgement."}, func() float64 { return float64(n.ResendQueueLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dpfw", Subsystem: "sync", Name: "external_entries",
			Help: "The peer's connections in the external cache."}, func() float64 { return float64(n.External.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "dpfw", Subsystem: "sync", Name: "peer_last_message_seconds",
			Help: "Seconds since the last message from the peer (-1: none yet)."}, func() float64 {
			if t := n.PeerSeen(); !t.IsZero() {
				return time.Since(t).Seconds()
			}
			return -1
		}))
	return out
}

// apiSyncStatus is GET /api/ha/status.
func (d *Daemon) apiSyncStatus(w http.ResponseWriter, r *http.Request) {
	s, ok := d.SyncStatus()
	if !ok {
		failJSON(w, http.StatusNotFound, errSyncOff)
		return
	}
	writeJSON(w, 200, s)
}

// apiPromote is POST /api/ha/promote.
func (d *Daemon) apiPromote(w http.ResponseWriter, r *http.Request) {
	p, err := d.Promote("dpfw ha promote")
	if err != nil {
		failJSON(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, 200, p)
}

// apiDemote is POST /api/ha/demote.
func (d *Daemon) apiDemote(w http.ResponseWriter, r *http.Request) {
	if err := d.Demote(); err != nil {
		failJSON(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, 200, map[string]string{"role": "backup"})
}

// apiSyncExternal is GET /api/ha/external: the external cache, as
// conntrack -L prints entries, each with how long ago the peer first
// told of it (conntrackd -e's "[active since …]"); with ?expect=1 the
// peer's expectations, as conntrack -L expect prints them.
func (d *Daemon) apiSyncExternal(w http.ResponseWriter, r *http.Request) {
	st := d.sync
	if st == nil {
		failJSON(w, http.StatusNotFound, errSyncOff)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriter(w)
	now, line := time.Now(), []byte(nil)
	if r.URL.Query().Get("expect") != "" {
		for _, x := range st.node.Expects.List(now) {
			line = append(x.AppendText(line[:0]), '\n')
			_, _ = bw.Write(line)
		}
		_ = bw.Flush()
		return
	}
	for _, s := range st.node.External.List() {
		line = s.Entry.AppendText(line[:0])
		line = append(line, " [active since "...)
		line = strconv.AppendInt(line, int64(now.Sub(s.First)/time.Second), 10)
		line = append(line, "s]\n"...)
		_, _ = bw.Write(line)
	}
	_ = bw.Flush()
}

var errSyncOff = errorString("sync is off: set sync.mode (README \"High availability\")")

type errorString string

func (e errorString) Error() string { return string(e) }
