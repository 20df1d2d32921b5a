// Package replay runs dpfw's packet pipeline over a capture, offline: the
// same decoding, checksum policy, connection tracking (with the capture's
// timestamps as its clock), FTP helper, fragment handling and rules as a
// worker, one frame at a time, and reports each frame's fate. It needs no
// DPDK: `dpfw replay` answers "what would these rules do to that capture".
package replay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
)

// Port says which frames entered on a config port: those from source MAC
// MAC, or (pcapng) those captured on interface IfIndex (-1: by MAC; Any:
// every frame no other Port claims, runts too).
type Port struct {
	Name    string
	MAC     net.HardwareAddr
	IfIndex int
}

// Any is Port.IfIndex for the port of every frame no other Port claims.
const Any = -2

// ParsePort parses a --port value: NAME=MAC, NAME=IFINDEX or NAME=any.
func ParsePort(s string) (Port, error) {
	name, val, ok := strings.Cut(s, "=")
	if !ok || name == "" || val == "" {
		return Port{}, fmt.Errorf("--port %q: want NAME=MAC (e.g. a=02:00:00:00:00:01), NAME=IFINDEX (a pcapng interface id) or NAME=any", s)
	}
	if val == "any" {
		return Port{Name: name, IfIndex: Any}, nil
	}
	if n, err := strconv.Atoi(val); err == nil && n >= 0 {
		return Port{Name: name, IfIndex: n}, nil
	}
	mac, err := net.ParseMAC(val)
	if err != nil || len(mac) != 6 {
		return Port{}, fmt.Errorf("--port %q: %q is neither a MAC address (02:00:00:00:00:01) nor a pcapng interface id (0, 1, …)", s, val)
	}
	return Port{Name: name, MAC: mac, IfIndex: -1}, nil
}

// Fate is what the pipeline did with one frame.
type Fate struct {
	Frame   int       `json:"frame"` // 1-based, in capture order
	Time    time.Time `json:"time"`
	In      string    `json:"in"`
	Out     string    `json:"out,omitempty"` // the paired port, if any
	Verdict string    `json:"verdict"`       // ACCEPT, DROP or REJECT
	State   string    `json:"state"`         // conntrack state (UNTRACKED when the rules use none)
	// Decision names the rule or chain policy that decided ("FORWARD#2",
	// "FORWARD policy"), "" when something before the rules did.
	Decision string `json:"decision,omitempty"`
	Rule     string `json:"rule,omitempty"` // the deciding rule, as iptables-save prints it
	Reason   string `json:"reason"`         // the drop reason ("none" when accepted)
	// Held: a fragment held until its datagram was decided.
	Held bool `json:"held,omitempty"`
}

// String formats f as one line of `dpfw replay`.
func (f *Fate) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s in %s: %s %s", f.Frame, f.Time.UTC().Format("15:04:05.000000"), f.In, f.Verdict, f.State)
	if f.Decision != "" {
		fmt.Fprintf(&b, " by %s", f.Decision)
		if f.Rule != "" {
			fmt.Fprintf(&b, " (%s)", f.Rule)
		}
	}
	if f.Verdict != filter.Accept.String() {
		fmt.Fprintf(&b, " reason %s", f.Reason)
	}
	if f.Held {
		b.WriteString(" [fragment held for its datagram]")
	}
	return b.String()
}

// Sink receives the results: every frame's fate, as it is decided (in
// frame order, but for a held fragment's, which comes when its datagram is
// decided, just before the frame that decided it), and the frames that
// would have been forwarded, in the order they would leave (nil: not
// wanted).
type Sink struct {
	Fate    func(*Fate) error
	Forward func(ci gopacket.CaptureInfo, frame []byte) error
}

// Summary counts the replay's fates.
type Summary struct {
	Frames, Accepted, Dropped int
}

// engine is one replay: a pipeline and the bookkeeping around it.
type engine struct {
	cfg     *config.Config
	f       *filter.Filter
	pl      *dataplane.Pipeline
	names   []string // port name by port id
	ports   []Port
	infos   []dataplane.PortInfo
	sink    Sink
	burst   dataplane.Burst
	start   time.Time
	now     int64              // the pipeline clock of the last frame
	ids     map[string]uint16  // port id by name
	held    map[uint16]int     // held slot → frame number
	waiting map[int]*heldFrame // held frames by number: at most dataplane.FragHeld
	sum     Summary
}

// Run replays the capture r (pcap or pcapng) through cfg's rules.
func Run(cfg *config.Config, ports []Port, r io.Reader, sink Sink) (Summary, error) {
	e, err := newEngine(cfg, ports, sink)
	if err != nil {
		return Summary{}, err
	}
	src, err := open(r)
	if err != nil {
		return Summary{}, err
	}
	for n := 1; ; n++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return e.sum, fmt.Errorf("frame %d: reading the capture: %w", n, err)
		}
		if len(ci.AncillaryData) > 0 && ci.AncillaryData[0] != layers.LinkTypeEthernet {
			return e.sum, fmt.Errorf("frame %d: link type %v (interface %d); dpfw replays Ethernet frames", n, ci.AncillaryData[0], ci.InterfaceIndex)
		}
		if err := e.frame(n, data, ci); err != nil {
			return e.sum, err
		}
	}
	return e.sum, e.finish()
}

func newEngine(cfg *config.Config, ports []Port, sink Sink) (*engine, error) {
	ids := ruleset.ConfigPortIDs(cfg)
	names := make([]string, len(cfg.Ports))
	for name, id := range ids {
		names[id] = name
	}
	for _, p := range ports {
		if _, ok := ids[p.Name]; !ok {
			return nil, fmt.Errorf("--port %s: the config has no port %q (it has %s)", p.Name, p.Name, strings.Join(names, ", "))
		}
	}
	f, err := ruleset.Compile(cfg, ids, 1)
	if err != nil {
		return nil, err
	}
	infos, err := ruleset.PortInfos(cfg, ids)
	if err != nil {
		return nil, err
	}
	var rules atomic.Pointer[filter.Active]
	rules.Store(filter.Install(f, 1, nil))
	tr := conntrack.NewTracker(ruleset.TrackerConfig(cfg, 1))
	opts := dataplane.Options{PassNonIP: cfg.Dataplane.NonIP == "pass", Ports: infos, Workers: 1,
		RejectPerSecond: cfg.Dataplane.RejectPerSecond, Checksum: ruleset.ChecksumMode(cfg)}
	e := &engine{cfg: cfg, f: f, names: names, ports: ports, infos: infos, sink: sink,
		ids: ids, held: map[uint16]int{}, waiting: map[int]*heldFrame{}}
	e.pl = dataplane.NewPipeline(opts, tr, &rules, new(dataplane.Counters))
	return e, nil
}

// open reads a pcap or a pcapng capture.
func open(r io.Reader) (interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("reading the capture: %w", err)
	}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		// Every interface's frames, whatever its link type: a frame that
		// is not Ethernet is an error naming it, not skipped in silence.
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			return nil, fmt.Errorf("reading the pcapng capture: %w", err)
		}
		return ng, nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, fmt.Errorf("not a pcap or pcapng capture: %w", err)
	}
	if pr.LinkType() != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("the capture's link type is %v; dpfw replays Ethernet frames", pr.LinkType())
	}
	return pr, nil
}

// inPort finds the port frame n entered on.
func (e *engine) inPort(n int, data []byte, ci gopacket.CaptureInfo) (uint16, error) {
	ids := e.ids
	fallback := ""
	for _, p := range e.ports {
		switch {
		case p.IfIndex == Any:
			fallback = p.Name
		case p.IfIndex >= 0 && p.IfIndex == ci.InterfaceIndex:
			return ids[p.Name], nil
		case p.IfIndex < 0 && len(data) >= 12 && bytes.Equal(data[6:12], p.MAC):
			return ids[p.Name], nil
		}
	}
	if fallback != "" {
		return ids[fallback], nil
	}
	if len(data) < 12 {
		return 0, fmt.Errorf("frame %d (%d bytes, too short for a MAC) entered on no --port: add --port NAME=any", n, len(data))
	}
	src := net.HardwareAddr(data[6:12]).String()
	return 0, fmt.Errorf("frame %d (source MAC %s, interface %d) entered on no --port: add --port NAME=%s (or NAME=%d for the interface, NAME=any for every other frame)",
		n, src, ci.InterfaceIndex, src, ci.InterfaceIndex)
}

// frame runs frame n through the pipeline, alone in its burst, at its
// capture time.
func (e *engine) frame(n int, data []byte, ci gopacket.CaptureInfo) error {
	in, err := e.inPort(n, data, ci)
	if err != nil {
		return err
	}
	if e.start.IsZero() {
		e.start = ci.Timestamp
		// The clock starts an hour in: timestamps read as capture times.
		e.pl.Tracker.SetEpoch(e.start.Add(-time.Hour))
	}
	// The tracker's clock starts an hour in, so that timeouts never wrap.
	e.now = int64(time.Hour) + ci.Timestamp.Sub(e.start).Nanoseconds()
	b := &e.burst
	b.N = 1
	b.Decode(0, data, 0)
	e.pl.Process(b, in, e.now)
	fate := e.fate(n, ci.Timestamp, in, 0)
	if s := b.Held[0]; s != 0 {
		e.held[s-1] = n
		e.waiting[n] = &heldFrame{fate: fate, frame: append([]byte(nil), data...)}
	}
	// Fragments held before leave ahead of the frame that completed them.
	if err := e.released(ci); err != nil {
		return err
	}
	if b.Held[0] != 0 {
		return nil // decided later
	}
	if b.Verdict[0] == filter.Accept && e.sink.Forward != nil {
		if err := e.sink.Forward(ci, data); err != nil {
			return err
		}
	}
	return e.emit(fate)
}

// fate describes packet i of the burst (frame n, entered on port in).
func (e *engine) fate(n int, ts time.Time, in uint16, i int) *Fate {
	b := &e.burst
	fa := &Fate{Frame: n, Time: ts, In: e.names[in], Verdict: b.Verdict[i].String(), State: b.State[i].String(), Reason: b.Reason[i].String()}
	if out := e.infos[in].Out; int(out) < len(e.names) {
		fa.Out = e.names[out]
	}
	e.decision(fa, b.Decision[i])
	return fa
}

// decision names decision d in fa.
func (e *engine) decision(fa *Fate, d uint32) {
	if d == dataplane.NoDecision || int(d) >= e.f.NumDecisions() {
		return
	}
	fa.Decision = e.f.DecisionName(d)
	if int(d) < len(e.f.Rules) {
		fa.Rule = e.f.Rules[d].String()
	}
}

// heldFrame is a held fragment's frame and its fate so far.
type heldFrame struct {
	fate  *Fate
	frame []byte
}

// released reports the held fragments the last call decided (they leave
// before the frame that completed their datagram).
func (e *engine) released(ci gopacket.CaptureInfo) error {
	for _, r := range e.pl.Released() {
		n, ok := e.held[r.Slot]
		if !ok {
			return fmt.Errorf("internal error: released slot %d holds no frame", r.Slot)
		}
		delete(e.held, r.Slot)
		h := e.waiting[n]
		delete(e.waiting, n)
		p := h.fate
		p.Verdict, p.Reason, p.State, p.Held = filter.Drop.String(), r.Reason.String(), r.State.String(), true
		if r.Accept {
			p.Verdict = filter.Accept.String()
			if e.sink.Forward != nil {
				if err := e.sink.Forward(ci, h.frame); err != nil {
					return err
				}
			}
		}
		e.decision(p, r.Decision)
		if err := e.emit(p); err != nil {
			return err
		}
	}
	return nil
}

// emit hands a decided frame's fate to the sink. A held fragment's comes
// when its datagram is decided (it waits for nothing else, so the memory
// a replay holds is bounded by the fragments held).
func (e *engine) emit(fa *Fate) error {
	e.sum.Frames++
	if fa.Verdict == filter.Accept.String() {
		e.sum.Accepted++
	} else {
		e.sum.Dropped++
	}
	return e.sink.Fate(fa)
}

// finish lets the fragments still held time out, as they would 30 s on,
// and reports them.
func (e *engine) finish() error {
	for k := 0; k <= dataplane.FragHeld/64 && len(e.held) > 0; k++ {
		e.pl.Idle(e.now + 31*int64(time.Second))
		if err := e.released(gopacket.CaptureInfo{}); err != nil {
			return err
		}
	}
	if len(e.held) > 0 {
		e.pl.FlushFragments()
		if err := e.released(gopacket.CaptureInfo{}); err != nil {
			return err
		}
	}
	return nil
}
