package daemon

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// Packet traces (dpfw trace): each stream attaches a filter to a slot of
// the TraceSet the workers load per burst (at most dataplane.MaxTraces at
// once) and detaches it when it ends; the workers' records reach it
// through the trace hub, which hands each stream the records of its slot.

// ParseTraceFilter reads a trace's filter from the API's query: proto,
// src, dst, sport and dport as the conntrack filters read them (the
// packet's own addresses and ports), and port, an input port's name among
// ports.
func ParseTraceFilter(q url.Values, ports map[string]uint16) (dataplane.TraceFilter, error) {
	f := dataplane.TraceFilter{In: dataplane.AnyPort}
	sub := url.Values{}
	for _, k := range []string{"proto", "src", "dst", "sport", "dport"} {
		if v, ok := q[k]; ok {
			sub[k] = v
		}
	}
	cf, err := ParseConnFilter(sub)
	if err != nil {
		return f, err
	}
	f.Src, f.Dst = cf.Orig.Src, cf.Orig.Dst
	f.SrcPort, f.DstPort = uint16(max(cf.Orig.SPort, 0)), uint16(max(cf.Orig.DPort, 0))
	if cf.Proto >= 0 {
		f.Proto = uint8(cf.Proto)
	}
	if (f.SrcPort != 0 || f.DstPort != 0) && f.Proto != 0 && f.Proto != header.ProtoTCP && f.Proto != header.ProtoUDP && f.Proto != header.ProtoSCTP {
		return f, errors.New("--sport and --dport need -p tcp, udp or sctp (or no -p)")
	}
	if v := q.Get("port"); v != "" {
		id, ok := ports[v]
		if !ok {
			return f, fmt.Errorf("port %q: no such port (the config has %s)", v, strings.Join(sortedKeys(ports), ", "))
		}
		f.In = id
	}
	return f, nil
}

func sortedKeys(m map[string]uint16) []string { return slices.Sorted(maps.Keys(m)) }

// attachTrace puts f in a free slot of the workers' trace set.
func (d *Daemon) attachTrace(f dataplane.TraceFilter) (int, error) {
	d.traceMu.Lock()
	defer d.traceMu.Unlock()
	var set dataplane.TraceSet
	if cur := d.traces.Load(); cur != nil {
		set = *cur
	}
	for i := range set.Filters {
		if set.Used&(1<<i) == 0 {
			set.Filters[i], set.Used = f, set.Used|1<<i
			d.traces.Store(&set)
			return i, nil
		}
	}
	return 0, fmt.Errorf("%d traces are attached already, the most at once: stop one", dataplane.MaxTraces)
}

// detachTrace frees slot i; the last one leaves the workers no set at all.
func (d *Daemon) detachTrace(i int) {
	d.traceMu.Lock()
	defer d.traceMu.Unlock()
	set := *d.traces.Load()
	set.Used &^= 1 << i
	set.Filters[i] = dataplane.TraceFilter{}
	if set.Used == 0 {
		d.traces.Store(nil)
		return
	}
	d.traces.Store(&set)
}

// portIDs maps the ports' names to their ids.
func (d *Daemon) portIDs() map[string]uint16 {
	m := map[string]uint16{}
	for _, p := range d.Ports {
		m[p.Config.Name] = uint16(p.ID)
	}
	return m
}

// apiTrace streams the records of the packets a filter selects (GET
// /api/trace): one line each (format=json: one JSON object), at most count
// (0: until the client goes).
func (d *Daemon) apiTrace(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := ParseTraceFilter(q, d.portIDs())
	if err != nil {
		failJSON(w, http.StatusBadRequest, err)
		return
	}
	count, _ := strconv.Atoi(q.Get("count"))
	slot, err := d.attachTrace(f)
	if err != nil {
		failJSON(w, http.StatusConflict, err)
		return
	}
	defer d.detachTrace(slot)
	bit := uint8(1) << slot
	l := d.traceHub.listen(func(rec *dataplane.TraceRecord) bool { return rec.Mask&bit != 0 })
	defer d.traceHub.unlisten(l)
	names := map[uint16]string{filter.NoPort: "-"}
	for name, id := range d.portIDs() {
		names[id] = name
	}
	asJSON := q.Get("format") == "json"
	d.traceHub.stream(w, r, d.quit, l, count, func(bw *bufio.Writer, s *stamped[dataplane.TraceRecord]) bool {
		t := d.describe(s, names)
		if asJSON {
			_ = json.NewEncoder(bw).Encode(t)
		} else {
			_, _ = bw.WriteString(t.line() + "\n")
		}
		return true
	}, lostLine("trace records"))
}

// TraceJSON is a trace record for people and programs: names, not ids.
type TraceJSON struct {
	Time     time.Time `json:"time"`
	Worker   int       `json:"worker"`
	In       string    `json:"in"`
	Out      string    `json:"out"`
	Family   string    `json:"family"`
	Proto    string    `json:"proto"`
	Src      string    `json:"src"`
	Dst      string    `json:"dst"`
	SrcPort  uint16    `json:"sport,omitempty"`
	DstPort  uint16    `json:"dport,omitempty"`
	TCPFlags string    `json:"tcp_flags,omitempty"`
	ICMPType *uint8    `json:"icmp_type,omitempty"`
	ICMPCode *uint8    `json:"icmp_code,omitempty"`
	Len      int       `json:"len"`
	// State is the packet's connection state; Invalid why it is
	// INVALID; TCPBefore/TCPAfter the connection's TCP state around it
	// ("" before: it had no connection).
	State     string `json:"state"`
	Invalid   string `json:"invalid,omitempty"`
	TCPBefore string `json:"tcp_before,omitempty"`
	TCPAfter  string `json:"tcp_after,omitempty"`
	// Path is every rule matched, in order, and the policy that decided.
	Path      []string `json:"path"`
	Truncated bool     `json:"path_truncated,omitempty"`
	Verdict   string   `json:"verdict"`
	Reason    string   `json:"reason,omitempty"`
	// Decision names the rule or policy that decided ("" when the rules
	// did not: a drop before them), Rule its text; Cached says the
	// decision came from the connection's verdict cache.
	Decision   string `json:"decision,omitempty"`
	Rule       string `json:"rule,omitempty"`
	Cached     bool   `json:"cached"`
	Generation uint32 `json:"generation"`
}

// describe names a record's ports, state and rules (from the running rule
// set, if it is the record's generation).
func (d *Daemon) describe(s *stamped[dataplane.TraceRecord], names map[uint16]string) TraceJSON {
	r := &s.v
	t := TraceJSON{Time: s.at, Worker: int(r.Worker), In: names[r.In], Out: names[r.Out], Family: r.Kind.String(),
		Proto: conntrack.ProtoName(r.Proto), Src: addrString(r.Kind, r.Src), Dst: addrString(r.Kind, r.Dst), Len: int(r.Len),
		State: r.State.String(), Verdict: r.Verdict.String(), Cached: r.Cached, Generation: r.Gen, Truncated: r.Path.Truncated}
	if r.Kind != packet.IPv4 && r.Kind != packet.IPv6 {
		t.Proto, t.Src, t.Dst = "", "", ""
	}
	switch r.Proto {
	case header.ProtoTCP, header.ProtoUDP, header.ProtoSCTP:
		t.SrcPort, t.DstPort = r.SrcPort, r.DstPort
	case header.ProtoICMP, header.ProtoICMPv6:
		t.ICMPType, t.ICMPCode = &r.ICMPType, &r.ICMPCode
	}
	if r.Proto == header.ProtoTCP {
		t.TCPFlags = tcpFlags(r.TCPFlags)
		if r.Existed {
			t.TCPBefore = r.TCPBefore.String()
		}
		if r.State != conntrack.Invalid && r.State != conntrack.Untracked {
			t.TCPAfter = r.TCPAfter.String()
		}
	}
	if r.State == conntrack.Invalid && r.Invalid != conntrack.InvalidNone {
		t.Invalid = r.Invalid.String()
	}
	if r.Reason != filter.DropNone {
		t.Reason = r.Reason.String()
	}
	f := d.Rules.Load()
	t.Path = []string{}
	if f.Gen != r.Gen {
		if r.Decision != dataplane.NoDecision {
			t.Decision = fmt.Sprintf("decision %d of rule-set generation %d (replaced since)", r.Decision, r.Gen)
		}
		return t
	}
	for _, step := range r.Path.Steps[:r.Path.N] {
		t.Path = append(t.Path, f.DecisionName(f.StepDecision(step)))
	}
	if r.Decision != dataplane.NoDecision {
		t.Decision = f.DecisionName(r.Decision)
		if int(r.Decision) < len(f.Rules) {
			t.Rule = f.Rules[r.Decision].String()
		}
	}
	return t
}

// line is the record as one line of text.
func (t *TraceJSON) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s worker %d %s>%s ", t.Time.Format("15:04:05.000000"), t.Worker, t.In, t.Out)
	switch {
	case t.Proto == "":
		fmt.Fprintf(&b, "%s len %d", t.Family, t.Len)
	case t.SrcPort != 0 || t.DstPort != 0:
		fmt.Fprintf(&b, "%s %s > %s", t.Proto, hostPort(t.Src, t.SrcPort), hostPort(t.Dst, t.DstPort))
	default:
		fmt.Fprintf(&b, "%s %s > %s", t.Proto, t.Src, t.Dst)
	}
	if t.TCPFlags != "" {
		fmt.Fprintf(&b, " [%s]", t.TCPFlags)
	}
	if t.ICMPType != nil {
		fmt.Fprintf(&b, " type %d code %d", *t.ICMPType, *t.ICMPCode)
	}
	if t.Proto != "" {
		fmt.Fprintf(&b, " len %d", t.Len)
	}
	fmt.Fprintf(&b, " | %s", t.State)
	if t.Invalid != "" {
		fmt.Fprintf(&b, " (%s)", t.Invalid)
	}
	if t.TCPAfter != "" {
		before := t.TCPBefore
		if before == "" {
			before = "new"
		}
		fmt.Fprintf(&b, " %s->%s", before, t.TCPAfter)
	}
	if len(t.Path) > 0 {
		fmt.Fprintf(&b, " | %s", strings.Join(t.Path, ", "))
		if t.Truncated {
			b.WriteString(", …")
		}
	}
	fmt.Fprintf(&b, " | %s", t.Verdict)
	if t.Reason != "" {
		fmt.Fprintf(&b, " reason %s", t.Reason)
	}
	if t.Decision != "" {
		fmt.Fprintf(&b, " by %s", t.Decision)
	}
	if t.Cached {
		b.WriteString(" (from the verdict cache)")
	}
	if t.Rule != "" {
		fmt.Fprintf(&b, ": %s", t.Rule)
	}
	return b.String()
}

func hostPort(addr string, port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), port).String()
}

// addrString formats an address of a packet of kind k.
func addrString(k packet.Kind, a [16]byte) string {
	if k == packet.IPv4 {
		return netip.AddrFrom4([4]byte(a[:4])).String()
	}
	return netip.AddrFrom16(a).String()
}

// tcpFlags names the TCP flags set, as tcpdump abbreviates them.
func tcpFlags(f uint8) string {
	var b []byte
	for _, fl := range []struct {
		bit  uint8
		name byte
	}{{0x02, 'S'}, {0x01, 'F'}, {0x04, 'R'}, {0x08, 'P'}, {0x10, '.'}, {0x20, 'U'}, {0x40, 'E'}, {0x80, 'W'}} {
		if f&fl.bit != 0 {
			b = append(b, fl.name)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}
