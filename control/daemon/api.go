package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
)

// ConnFilter selects connections for listing and flushing, as conntrack's
// options do: Src, Dst, SPort and DPort match the original direction's
// tuple (-s, -d, --sport, --dport), the Reply ones the reply direction's
// (-r, -q, --reply-port-src, --reply-port-dst).
type ConnFilter struct {
	Proto  int // -1: any
	Family int // 0: any, 4 or 6 (-f ipv4|ipv6)
	Orig   TupleFilter
	Reply  TupleFilter
	State  string // TCP state (--state)
	// Status bits that must be set (-u ASSURED,SEEN_REPLY; UNREPLIED: no
	// reply seen).
	Assured, SeenReply, Unreplied bool
}

// TupleFilter matches one direction's tuple; zero fields match anything.
type TupleFilter struct {
	Src, Dst     netip.Prefix
	SPort, DPort int // -1: any
}

// filterKeys are the query parameters a ConnFilter reads, with their
// parsers: one handler per option, as the command line has one flag each.
var filterKeys = []struct {
	key   string
	parse func(f *ConnFilter, v string) error
}{
	{"proto", parseProto},
	{"family", parseFamily},
	{"src", func(f *ConnFilter, v string) error { return parsePrefix("src", v, &f.Orig.Src) }},
	{"dst", func(f *ConnFilter, v string) error { return parsePrefix("dst", v, &f.Orig.Dst) }},
	{"sport", func(f *ConnFilter, v string) error { return parsePort("sport", v, &f.Orig.SPort) }},
	{"dport", func(f *ConnFilter, v string) error { return parsePort("dport", v, &f.Orig.DPort) }},
	{"reply-src", func(f *ConnFilter, v string) error { return parsePrefix("reply-src", v, &f.Reply.Src) }},
	{"reply-dst", func(f *ConnFilter, v string) error { return parsePrefix("reply-dst", v, &f.Reply.Dst) }},
	{"reply-sport", func(f *ConnFilter, v string) error { return parsePort("reply-sport", v, &f.Reply.SPort) }},
	{"reply-dport", func(f *ConnFilter, v string) error { return parsePort("reply-dport", v, &f.Reply.DPort) }},
	{"state", parseState},
	{"status", parseStatus},
}

// ParseConnFilter reads a filter from URL query values.
func ParseConnFilter(q map[string][]string) (ConnFilter, error) {
	f := ConnFilter{Proto: -1, Orig: TupleFilter{SPort: -1, DPort: -1}, Reply: TupleFilter{SPort: -1, DPort: -1}}
	for _, k := range filterKeys {
		if v := q[k.key]; len(v) > 0 && v[0] != "" {
			if err := k.parse(&f, v[0]); err != nil {
				return f, err
			}
		}
	}
	return f, nil
}

func parseProto(f *ConnFilter, v string) error {
	p, ok := map[string]int{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}[strings.ToLower(v)]
	if !ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 255 {
			return fmt.Errorf("proto %q: want tcp, udp, icmp, icmpv6 or 0-255", v)
		}
		p = n
	}
	f.Proto = p
	return nil
}

func parseFamily(f *ConnFilter, v string) error {
	switch strings.ToLower(v) {
	case "ipv4":
		f.Family = 4
	case "ipv6":
		f.Family = 6
	default:
		return fmt.Errorf("family %q: want ipv4 or ipv6", v)
	}
	return nil
}

func parsePrefix(k, v string, p *netip.Prefix) error {
	if !strings.Contains(v, "/") {
		addr, err := netip.ParseAddr(v)
		if err != nil {
			return fmt.Errorf("%s %q: want an address or CIDR", k, v)
		}
		*p = netip.PrefixFrom(addr, addr.BitLen())
		return nil
	}
	pr, err := netip.ParsePrefix(v)
	if err != nil {
		return fmt.Errorf("%s %q: want an address or CIDR", k, v)
	}
	*p = pr
	return nil
}

func parsePort(k, v string, p *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%s %q: want 0-65535", k, v)
	}
	*p = n
	return nil
}

func parseState(f *ConnFilter, v string) error {
	f.State = strings.ToUpper(v)
	if !slices.Contains(tcpstate.StateNames(), f.State) {
		return fmt.Errorf("state %q: want one of %s", v, strings.Join(tcpstate.StateNames(), ", "))
	}
	return nil
}

func parseStatus(f *ConnFilter, v string) error {
	for _, s := range strings.Split(strings.ToUpper(v), ",") {
		switch s {
		case "ASSURED":
			f.Assured = true
		case "SEEN_REPLY":
			f.SeenReply = true
		case "UNREPLIED":
			f.Unreplied = true
		default:
			return fmt.Errorf("status %q: want ASSURED, SEEN_REPLY or UNREPLIED (comma-separated)", s)
		}
	}
	return nil
}

// match reports whether tuple t matches.
func (tf *TupleFilter) match(t conntrack.Tuple) bool {
	return (!tf.Src.IsValid() || tf.Src.Contains(t.SrcAddr())) &&
		(!tf.Dst.IsValid() || tf.Dst.Contains(t.DstAddr())) &&
		(tf.SPort < 0 || int(t.SrcPort) == tf.SPort) &&
		(tf.DPort < 0 || int(t.DstPort) == tf.DPort)
}

// Match reports whether e matches.
func (f *ConnFilter) Match(e *conntrack.Entry) bool {
	o := e.Orig
	switch {
	case f.Proto >= 0 && int(o.Proto) != f.Proto,
		f.Family != 0 && int(o.Family) != f.Family,
		f.State != "" && e.TCPState.String() != f.State,
		f.Assured && !e.Assured, f.SeenReply && !e.SeenReply, f.Unreplied && e.SeenReply:
		return false
	}
	return f.Orig.match(o) && f.Reply.match(o.Reverse())
}

// listChunk is how many entries a listing copies out of a worker at a
// time: the control side's memory for a listing is one chunk, however
// large the table.
const listChunk = 4096

// Conntrack calls emit with the matching connections of every worker, a
// chunk at a time, up to limit in all, or with flush deletes them and
// returns how many. Each worker serves the request between bursts, paced
// (dataplane.busyServeEvery), so the packet path never stalls.
func (d *Daemon) Conntrack(ctx context.Context, f ConnFilter, flush bool, limit int, emit func([]conntrack.Entry) error) (int, error) {
	deleted, emitted := 0, 0
	for w, pl := range d.pipes {
		req := dataplane.NewRequest(flush, f.Match, listChunk)
		for {
			for !pl.Post(req) {
				select {
				case <-ctx.Done():
					return deleted, ctx.Err()
				case <-time.After(time.Millisecond):
				}
			}
			select {
			case <-req.Done():
			case <-ctx.Done():
				return deleted, fmt.Errorf("worker %d did not answer: %w", w, ctx.Err())
			}
			deleted += req.Deleted
			req.Deleted = 0
			if n := min(len(req.Entries), limit-emitted); n > 0 {
				if err := emit(req.Entries[:n]); err != nil {
					return deleted, err
				}
				emitted += n
			}
			if !req.More || emitted >= limit {
				break
			}
			req.Next()
		}
		if emitted >= limit {
			break
		}
	}
	return deleted, nil
}

// Expectations returns every worker's pending FTP expectations.
func (d *Daemon) Expectations(ctx context.Context) ([]conntrack.Expectation, error) {
	var out []conntrack.Expectation
	for w, pl := range d.pipes {
		req := dataplane.NewExpectRequest(d.Config.Conntrack.FTP.MaxExpectations)
		for !pl.Post(req) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		select {
		case <-req.Done():
		case <-ctx.Done():
			return nil, fmt.Errorf("worker %d did not answer: %w", w, ctx.Err())
		}
		out = append(out, req.Expectations...)
	}
	return out, nil
}

// listTimeout is how long a listing or flush may take: a busy worker
// examines entriesPerRound slots every busyServeEvery, so this grows with
// the table (2 M slots: about 3 s), with a wide margin.
func (d *Daemon) listTimeout() time.Duration {
	return 30*time.Second + time.Duration(d.Config.Conntrack.Capacity/64)*100*time.Microsecond*3
}

// Handler serves the runtime API (JSON) under /api/.
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range d.routes() {
		mux.HandleFunc(rt.pattern, rt.handle)
	}
	return mux
}

// route is one API endpoint.
type route struct {
	pattern string
	handle  http.HandlerFunc
}

// routes is the API, one handler per endpoint.
func (d *Daemon) routes() []route {
	return []route{
		{"GET /api/readyz", d.apiReady},
		{"GET /api/healthz", d.apiHealth},
		{"GET /api/stats", d.apiStats},
		{"GET /api/rules", d.apiRules},
		{"GET /api/rules/save", d.apiRulesSave},
		{"POST /api/rules/zero", d.apiRulesZero},
		{"POST /api/rules/edit", d.apiRulesEdit},
		{"POST /api/reload", d.apiReload},
		{"GET /api/conntrack", d.apiConntrackList},
		{"POST /api/conntrack/flush", d.apiConntrackFlush},
		{"GET /api/conntrack/expect", d.apiExpect},
		{"GET /api/conntrack/stats", d.apiConntrackStats},
		{"GET /api/conntrack/events", d.apiEvents},
		{"GET /api/trace", d.apiTrace},
		{"GET /api/ha/status", d.apiSyncStatus},
		{"GET /api/ha/external", d.apiSyncExternal},
		{"POST /api/ha/promote", d.apiPromote},
		{"POST /api/ha/demote", d.apiDemote},
	}
}

// writeJSON writes v as compact JSON, streamed to the client (a listing of
// a large table is tens of megabytes; "dpfw stats" and "conntrack list
// --json" indent).
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// failJSON writes an error as {"error": "…"}.
func failJSON(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// apiReady answers 200 once every worker polls (GET /api/readyz).
func (d *Daemon) apiReady(w http.ResponseWriter, r *http.Request) {
	if !d.Ready() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// apiHealth answers 503 when a worker has stopped (GET /api/healthz).
func (d *Daemon) apiHealth(w http.ResponseWriter, r *http.Request) {
	if !d.Healthy() {
		http.Error(w, "a worker stopped", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// apiStats reports ports and workers (GET /api/stats).
func (d *Daemon) apiStats(w http.ResponseWriter, r *http.Request) {
	type port struct {
		Name string `json:"name"`
		Rx   uint64 `json:"rx_packets"`
		Tx   uint64 `json:"tx_packets"`
		Miss uint64 `json:"rx_missed"`
		Up   bool   `json:"link_up"`
	}
	var ports []port
	for _, p := range d.Ports {
		st, _ := p.ID.Stats()
		l, _ := p.ID.Link()
		ports = append(ports, port{p.Config.Name, st.IPackets, st.OPackets, st.IMissed, l.Up})
	}
	type wk struct {
		dataplane.Snapshot
		DropsByReason map[string]uint64 `json:"drops_by_reason"`
		Connections   uint64            `json:"connections"`
	}
	var workers []wk
	for i, s := range d.Snapshots() {
		m := map[string]uint64{}
		for r := filter.DropReason(1); r < filter.NumDropReasons; r++ {
			if s.Drops[r] != 0 {
				m[r.String()] = s.Drops[r]
			}
		}
		workers = append(workers, wk{s, m, d.Workers[i].Counters().CT().Entries})
	}
	writeJSON(w, 200, map[string]any{"ports": ports, "workers": workers, "mbufs_in_use": d.MbufsInUse()})
}

// apiRules lists the rules with their counters (GET /api/rules).
func (d *Daemon) apiRules(w http.ResponseWriter, r *http.Request) {
	f := d.Rules.Load()
	type rule struct {
		Chain   string `json:"chain"`
		Num     string `json:"num"`
		Packets uint64 `json:"packets"`
		Bytes   uint64 `json:"bytes"`
		Target  string `json:"target"`
		Spec    string `json:"rule"`
	}
	var out []rule
	for _, st := range d.RuleStats() {
		rl := rule{Chain: st.Chain, Num: st.Rule, Packets: st.Packets, Bytes: st.Bytes, Target: st.Target}
		if n, err := strconv.Atoi(st.Rule); err == nil {
			for i := range f.Rules {
				if f.Rules[i].Chain == st.Chain {
					rl.Spec = f.Rules[i+n-1].String()
					break
				}
			}
		}
		out = append(out, rl)
	}
	writeJSON(w, 200, map[string]any{"generation": f.Gen, "rules": out})
}

// apiRulesSave prints the running rule set as iptables-save does (GET /api/rules/save).
func (d *Daemon) apiRulesSave(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]string{"save": d.Rules.Load().Ruleset.Save()})
}

// apiRulesZero zeroes the rule counters (POST /api/rules/zero).
func (d *Daemon) apiRulesZero(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	num := 0
	if v := q.Get("num"); v != "" {
		var err error
		if num, err = strconv.Atoi(v); err != nil || num < 1 {
			failJSON(w, http.StatusBadRequest, fmt.Errorf("num %q: want a rule number from 1", v))
			return
		}
	}
	if err := d.Rules.Load().Zero(q.Get("chain"), num); err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, 200, map[string]string{"result": "counters zeroed"})
}

// apiReload reloads the configuration and reports the result (POST /api/reload).
func (d *Daemon) apiReload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), d.active.Load().Rules.ReloadTimeout+5*time.Second)
	defer cancel()
	res, err := d.Reload(ctx)
	if err != nil {
		failJSON(w, http.StatusUnprocessableEntity, err)
		return
	}
	writeJSON(w, 200, res)
}

// apiExpect lists the FTP expectations (GET /api/conntrack/expect).
func (d *Daemon) apiExpect(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), d.listTimeout())
	defer cancel()
	es, err := d.Expectations(ctx)
	if err != nil {
		failJSON(w, http.StatusServiceUnavailable, err)
		return
	}
	type expect struct {
		Src, Dst   string
		DstPort    uint16 `json:"dport"`
		Master     string `json:"master"`
		TimeoutSec uint32 `json:"timeout"`
		Text       string `json:"text"`
	}
	out := []expect{}
	for i := range es {
		e := &es[i]
		out = append(out, expect{Src: e.SrcAddr().String(), Dst: e.DstAddr().String(), DstPort: e.DstPort,
			Master: e.Master.String(), TimeoutSec: e.Timeout / 1000, Text: string(e.AppendText(nil))})
	}
	writeJSON(w, 200, out)
}

// apiConntrackStats reports each worker's connection-table counters (GET /api/conntrack/stats).
func (d *Daemon) apiConntrackStats(w http.ResponseWriter, r *http.Request) {
	var out []map[string]any
	for i, ct := range d.CTCounters() {
		byProto := map[string]uint64{}
		for p, n := range conntrack.ProtoClassNames {
			byProto[n] = uint64(max(ct.ByProto[p], 0))
		}
		invalid := map[string]uint64{}
		for r := conntrack.InvalidReason(2); r < conntrack.NumInvalidReasons; r++ {
			if v := ct.Invalid[r]; v != 0 {
				invalid[r.String()] = v
			}
		}
		out = append(out, map[string]any{
			"worker": i, "entries": ct.Entries, "capacity": ct.Capacity,
			"created": ct.Created, "expired": ct.Expired, "early_drops": ct.EarlyDrops,
			"table_full_drops": ct.TableFullDrops, "insert_failures": ct.Table.InsertFailures,
			"new_rate_drops": ct.RateLimited, "adaptive_expired": ct.Adaptive,
			"lookups": ct.Lookups, "hits": ct.Hits, "by_protocol": byProto, "invalid": invalid,
		})
	}
	writeJSON(w, 200, out)
}

// connQuery is a conntrack listing's or flush's parameters: the filter,
// the output format and the entry limit.
func connQuery(r *http.Request) (f ConnFilter, format string, limit int, err error) {
	q := r.URL.Query()
	if f, err = ParseConnFilter(q); err != nil {
		return f, "", 0, err
	}
	switch format = q.Get("format"); format {
	case "", "json", "text":
	default:
		return f, "", 0, fmt.Errorf("format %q: want json (the default) or text", format)
	}
	limit = 100000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			return f, "", 0, fmt.Errorf("limit %q: want a positive number", v)
		}
	}
	return f, format, limit, nil
}

// apiConntrackFlush deletes the matching entries (POST /api/conntrack/flush).
func (d *Daemon) apiConntrackFlush(w http.ResponseWriter, r *http.Request) {
	f, _, limit, err := connQuery(r)
	if err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.listTimeout())
	defer cancel()
	deleted, err := d.Conntrack(ctx, f, true, limit, nil)
	if err != nil {
		failJSON(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, 200, map[string]int{"deleted": deleted})
}

// apiConntrackList lists the matching entries (GET /api/conntrack), as
// conntrack -L lines (format=text) or as JSON.
func (d *Daemon) apiConntrackList(w http.ResponseWriter, r *http.Request) {
	f, format, limit, err := connQuery(r)
	if err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), d.listTimeout())
	defer cancel()
	if format == "text" {
		d.listText(ctx, w, f, limit)
		return
	}
	d.listJSON(ctx, w, f, limit)
}

// listText streams conntrack -L lines; an error after the first chunk cuts
// the stream short (no final newline).
func (d *Daemon) listText(ctx context.Context, w http.ResponseWriter, f ConnFilter, limit int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriterSize(w, 64<<10)
	line := make([]byte, 0, 256)
	_, err := d.Conntrack(ctx, f, false, limit, func(es []conntrack.Entry) error {
		for i := range es {
			line = append(es[i].AppendText(line[:0]), '\n')
			bw.Write(line)
		}
		return nil
	})
	if err != nil {
		d.log.Warn("conntrack listing cut short", "err", err)
	}
	_ = bw.Flush()
}

// listJSON streams {"entries":[…],"count":N}, written as the workers hand
// over chunks. An error after the first chunk can only cut the stream
// short (the client sees invalid JSON).
func (d *Daemon) listJSON(ctx context.Context, w http.ResponseWriter, f ConnFilter, limit int) {
	type entry struct {
		conntrack.EntryJSON
		Line string `json:"line"`
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	count, started := 0, false
	start := func() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		bw.WriteString(`{"entries":[`)
		started = true
	}
	_, err := d.Conntrack(ctx, f, false, limit, func(es []conntrack.Entry) error {
		if !started {
			start()
		}
		for i := range es {
			if count > 0 {
				bw.WriteByte(',')
			}
			if err := enc.Encode(entry{es[i].JSON(), es[i].String()}); err != nil {
				return err
			}
			count++
		}
		return nil
	})
	if err != nil && !started {
		failJSON(w, http.StatusServiceUnavailable, err)
		return
	}
	if !started {
		start()
	}
	if err != nil {
		d.log.Warn("conntrack listing cut short", "err", err)
		_ = bw.Flush()
		return
	}
	fmt.Fprintf(bw, `],"count":%d}`+"\n", count)
	_ = bw.Flush()
}
