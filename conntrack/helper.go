package conntrack

import (
	"net/netip"
	"strconv"
	"time"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack/ftp"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/packet/header"
)

// FTP expectations.
//
// RFC 959 FTP opens a separate TCP connection for every transfer. In active
// mode the client announces an address and port with PORT (or EPRT, RFC
// 2428) and the server connects to it (from port 20); in passive mode the
// server announces one in its 227 (or 229) reply and the client connects.
// Like Linux's nf_conntrack_ftp, the tracker reads those lines on control
// connections to the configured ports (21 by default) in both directions and
// records an expectation: the tuple of the data connection to come, with any
// source port. The first packet that matches it creates a connection in
// state RELATED, linked to its control connection; once answered it is
// ESTABLISHED. An expectation is used once, lives ExpectTimeout (300 s),
// and dies with its control connection.
//
// Security, as nf_conntrack_ftp: an announced address must be the control
// connection's own endpoint (else it is an FTP bounce or a forged 227),
// unless Loose; active-mode ports below 1024 are refused unless
// AllowLowPorts; malformed numbers are ignored and counted. Expectations
// are bounded per control connection and per worker. A line is reassembled
// across segments in a bounded per-direction buffer; a longer line is
// skipped and counted; retransmitted bytes are not parsed twice.

// FTPConfig configures the FTP helper.
type FTPConfig struct {
	Enabled bool
	// Ports are the control ports (default 21).
	Ports []uint16
	// Loose accepts announced addresses other than the control
	// connection's endpoints.
	Loose bool
	// AllowLowPorts accepts PORT/EPRT ports below 1024.
	AllowLowPorts bool
	// ExpectTimeout is how long an expectation waits for its connection.
	ExpectTimeout time.Duration
	// MaxExpectations bounds pending expectations per worker;
	// MaxPerMaster per control connection; MaxControl the control
	// connections inspected at once per worker.
	MaxExpectations, MaxPerMaster, MaxControl int
}

// DefaultFTP returns the helper's defaults.
func DefaultFTP() FTPConfig {
	return FTPConfig{Enabled: true, Ports: []uint16{21}, ExpectTimeout: 300 * time.Second,
		MaxExpectations: 1024, MaxPerMaster: 4, MaxControl: 4096}
}

// helperLine is the longest control line reassembled (RFC 959 replies and
// commands are short; EPRT with an IPv6 address is under 70 bytes).
const helperLine = 256

type helperSlot struct {
	conn    uint32 // entry index + 1; 0: free
	next    [2]uint32
	seen    [2]bool
	skip    [2]bool // discarding an over-long line until its end
	n       [2]uint16
	buf     [2][helperLine]byte
	nextFre int32
}

type expectation struct {
	src, dst [16]byte // src: the data connection's originator
	dport    uint16
	zone     uint16
	family   uint8
	master   uint32
	expires  uint32
}

// ExpectRefusal says why an announcement created no expectation.
type ExpectRefusal uint8

// Refusal reasons.
const (
	RefusedBounce    ExpectRefusal = iota // announced address is not the endpoint's
	RefusedLowPort                        // PORT/EPRT below 1024
	RefusedPerMaster                      // too many pending for this control connection
	RefusedFull                           // too many pending for this worker
	RefusedNoHelper                       // too many control connections to inspect
	NumRefusals
)

// RefusalNames names the refusal reasons.
var RefusalNames = [NumRefusals]string{"bounce", "low_port", "per_master_limit", "table_full", "helper_full"}

// FTPStats are the helper's counters (tags: see Stats).
type FTPStats struct {
	Announces   uint64
	Malformed   uint64              `stat:"ftp_malformed_total,counter" help:"FTP PORT/EPRT/227/229 lines that nf_conntrack_ftp finds malformed; their segments are dropped (drop reason ftp_malformed), as the kernel drops them."`
	LineTooLong uint64              `stat:"ftp_line_too_long_total,counter" help:"FTP control lines longer than the helper's buffer (skipped)."`
	Created     uint64              `stat:"expectations_created_total,counter" help:"Expected (RELATED) connections announced by FTP control connections."`
	Matched     uint64              `stat:"expectations_matched_total,counter" help:"Expectations used by their data connection."`
	Expired     uint64              `stat:"expectations_expired_total,counter" help:"Expectations that timed out unused."`
	Refused     [NumRefusals]uint64 `stat:"expectations_refused_total,counter" help:"Announcements that created no expectation, by reason." label:"reason=refusal"`
	Pending     int64
}

func (tr *Tracker) initFTP() {
	c := &tr.cfg.FTP
	if !c.Enabled {
		return
	}
	if len(c.Ports) == 0 {
		c.Ports = []uint16{21}
	}
	c.MaxExpectations = max(c.MaxExpectations, 1)
	c.MaxPerMaster = max(c.MaxPerMaster, 1)
	c.MaxControl = max(c.MaxControl, 1)
	if c.ExpectTimeout <= 0 {
		c.ExpectTimeout = 300 * time.Second
	}
	tr.expectMs = uint32(c.ExpectTimeout.Milliseconds())
	tr.helpers = make([]helperSlot, c.MaxControl)
	for i := range tr.helpers {
		tr.helpers[i].nextFre = int32(i + 1)
	}
	tr.helpers[len(tr.helpers)-1].nextFre = -1
	tr.freeHelper = 0
	tr.expects = make([]expectation, 0, c.MaxExpectations)
}

func (tr *Tracker) isFTPPort(p uint16) bool {
	for _, x := range tr.cfg.FTP.Ports {
		if x == p {
			return true
		}
	}
	return false
}

// attachHelper marks a new TCP connection to an FTP port for inspection.
func (tr *Tracker) attachHelper(idx uint32, c *Conn) {
	if tr.freeHelper < 0 {
		tr.FTP.Refused[RefusedNoHelper]++
		return
	}
	s := tr.freeHelper
	h := &tr.helpers[s]
	tr.freeHelper = h.nextFre
	*h = helperSlot{conn: idx + 1, nextFre: -1}
	c.flags |= flagHelper
	c.master = uint32(s) + 1
}

// detachHelper frees a control connection's helper slot and expectations.
func (tr *Tracker) detachHelper(idx uint32, c *Conn) {
	s := int32(c.master) - 1
	if s >= 0 && int(s) < len(tr.helpers) {
		tr.helpers[s] = helperSlot{nextFre: tr.freeHelper}
		tr.freeHelper = s
	}
	for i := 0; i < len(tr.expects); {
		if tr.expects[i].master == idx {
			tr.removeExpect(i)
			continue
		}
		i++
	}
}

func (tr *Tracker) removeExpect(i int) {
	last := len(tr.expects) - 1
	tr.expects[i] = tr.expects[last]
	tr.expects = tr.expects[:last]
}

// inspect feeds a control connection's payload in direction dir to its
// line buffer and handles every complete line.
func (tr *Tracker) inspect(idx uint32, c *Conn, dir Dir, seq uint32, payload []byte) {
	h := &tr.helpers[c.master-1]
	d := dir & 1
	if !h.seen[d] {
		h.next[d], h.seen[d] = seq, true
	}
	if seq != h.next[d] {
		if int32(seq-h.next[d]) < 0 {
			// Retransmitted (or overlapping) bytes: parse only what is new.
			old := h.next[d] - seq
			if int(old) >= len(payload) {
				return
			}
			payload, seq = payload[old:], h.next[d]
		} else {
			// A gap: we missed bytes; drop the partial line and resync.
			h.n[d], h.skip[d] = 0, true
		}
	}
	h.next[d] = seq + uint32(len(payload))
	for _, b := range payload {
		if b == '\n' {
			if !h.skip[d] {
				line := h.buf[d][:h.n[d]]
				if n := len(line); n > 0 && line[n-1] == '\r' {
					line = line[:n-1]
				}
				tr.ftpLine(idx, c, dir, line)
			}
			h.n[d], h.skip[d] = 0, false
			continue
		}
		if h.skip[d] {
			continue
		}
		if int(h.n[d]) == helperLine {
			h.skip[d], h.n[d] = true, 0
			tr.FTP.LineTooLong++
			continue
		}
		h.buf[d][h.n[d]] = b
		h.n[d]++
	}
}

func (tr *Tracker) ftpLine(idx uint32, c *Conn, dir Dir, line []byte) {
	var a ftp.Announce
	var ok, bad bool
	if dir == Original {
		a, ok, bad = ftp.ParseClient(line)
	} else {
		a, ok, bad = ftp.ParseServer(line)
	}
	if bad {
		// nf_conntrack_ftp drops a segment whose announcement it cannot
		// parse ("partial matching"), so that the ends and the tracker
		// never disagree about a data connection.
		tr.FTP.Malformed++
		tr.helperDrop = true
	}
	if !ok {
		return
	}
	if a.Kind == ftp.Eprt && a.Addr.Is4() != (c.Orig.Family == 4) {
		// try_eprt checks the family against the connection's: a
		// mismatch is malformed, and the segment is dropped.
		tr.FTP.Malformed++
		tr.helperDrop = true
		return
	}
	tr.FTP.Announces++
	o := &c.Orig
	client, server := o.SrcAddr(), o.DstAddr()
	var e expectation
	e.zone, e.family, e.master, e.dport = o.Zone, o.Family, idx, a.Port
	switch {
	case a.Active():
		if a.Addr != client && !tr.cfg.FTP.Loose {
			tr.FTP.Refused[RefusedBounce]++
			return
		}
		if a.Port < 1024 && !tr.cfg.FTP.AllowLowPorts {
			tr.FTP.Refused[RefusedLowPort]++
			return
		}
		e.src, e.dst = o.Dst, addrBytes(a.Addr)
	case a.Kind == ftp.Pasv:
		if a.Addr != server && !tr.cfg.FTP.Loose {
			tr.FTP.Refused[RefusedBounce]++
			return
		}
		e.src, e.dst = o.Src, addrBytes(a.Addr)
	default: // 229: the control connection's server address
		e.src, e.dst = o.Src, o.Dst
	}
	if a.Addr.IsValid() && a.Addr.Is4() != (o.Family == 4) {
		tr.FTP.Refused[RefusedBounce]++
		return
	}
	e.expires = tr.nowMs + tr.expectMs
	per := 0
	for i := range tr.expects {
		x := &tr.expects[i]
		if x.master != idx {
			continue
		}
		if x.src == e.src && x.dst == e.dst && x.dport == e.dport {
			x.expires = e.expires // a retransmitted announcement
			return
		}
		per++
	}
	if per >= tr.cfg.FTP.MaxPerMaster {
		tr.FTP.Refused[RefusedPerMaster]++
		return
	}
	if len(tr.expects) == cap(tr.expects) {
		tr.FTP.Refused[RefusedFull]++
		return
	}
	tr.expects = append(tr.expects, e) // within the preallocated capacity
	tr.FTP.Created++
}

func addrBytes(a netip.Addr) [16]byte {
	var b [16]byte
	if a.Is4() {
		v := a.As4()
		copy(b[:4], v[:])
		return b
	}
	return a.As16()
}

// expected returns the master of the expectation a new connection's first
// packet matches (removing the expectation), if any.
func (tr *Tracker) expected(k *Tuple) (uint32, bool) {
	for i := range tr.expects {
		e := &tr.expects[i]
		if e.dport == k.DstPort && e.dst == k.Dst && e.src == k.Src && e.zone == k.Zone && e.family == k.Family {
			if int32(e.expires-tr.nowMs) <= 0 {
				continue
			}
			m := e.master
			tr.removeExpect(i)
			tr.FTP.Matched++
			return m, true
		}
	}
	return 0, false
}

// reapExpectations drops expired expectations.
func (tr *Tracker) reapExpectations() {
	for i := 0; i < len(tr.expects); {
		if int32(tr.expects[i].expires-tr.nowMs) <= 0 {
			tr.removeExpect(i)
			tr.FTP.Expired++
			continue
		}
		i++
	}
}

// helperPayload runs the FTP helper for an accepted segment of a control
// connection.
func (tr *Tracker) helperPayload(idx uint32, c *Conn, dir Dir, p *packet.Parsed) {
	if p.Proto != header.ProtoTCP || p.PayOff >= p.L3End {
		return
	}
	seq := uint32(p.Buf[p.L4Off+4])<<24 | uint32(p.Buf[p.L4Off+5])<<16 | uint32(p.Buf[p.L4Off+6])<<8 | uint32(p.Buf[p.L4Off+7])
	tr.inspect(idx, c, dir, seq, p.Payload())
}

// PendingExpectations returns how many expectations wait for their
// connection.
func (tr *Tracker) PendingExpectations() int { return len(tr.expects) }

// Expectation is an announced data connection not yet opened, as
// conntrack -L expect shows it: from Src (any port) to Dst:DstPort, for
// the control connection Master.
type Expectation struct {
	Src, Dst [16]byte
	DstPort  uint16
	Family   uint8
	Zone     uint16
	Master   Tuple
	// Timeout is the time left, in ms.
	Timeout uint32
}

// SrcAddr returns the address the data connection comes from.
func (e *Expectation) SrcAddr() netip.Addr { return addr(e.Family, &e.Src) }

// DstAddr returns the address the data connection goes to.
func (e *Expectation) DstAddr() netip.Addr { return addr(e.Family, &e.Dst) }

// AppendText appends the expectation as conntrack -L expect prints it
// (timeout, protocol, the expected tuple with ports 0 for any source
// port, the master's tuple, the helper).
func (e *Expectation) AppendText(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(e.Timeout/1000), 10)
	b = append(b, " proto=6 src="...)
	b = e.SrcAddr().AppendTo(b)
	b = append(b, " dst="...)
	b = e.DstAddr().AppendTo(b)
	b = append(b, " sport=0 dport="...)
	b = strconv.AppendUint(b, uint64(e.DstPort), 10)
	m := &e.Master
	b = append(b, " master-src="...)
	b = m.SrcAddr().AppendTo(b)
	b = append(b, " master-dst="...)
	b = m.DstAddr().AppendTo(b)
	b = append(b, " sport="...)
	b = strconv.AppendUint(b, uint64(m.SrcPort), 10)
	b = append(b, " dport="...)
	b = strconv.AppendUint(b, uint64(m.DstPort), 10)
	return append(b, " helper=ftp"...)
}

// AppendExpectations appends the pending expectations to dst (up to its
// capacity: it never allocates when dst has room) and reports whether
// all fit.
func (tr *Tracker) AppendExpectations(dst []Expectation) ([]Expectation, bool) {
	for i := range tr.expects {
		x := &tr.expects[i]
		if int32(x.expires-tr.nowMs) <= 0 {
			continue
		}
		if len(dst) == cap(dst) {
			return dst, false
		}
		e := Expectation{Src: x.src, Dst: x.dst, DstPort: x.dport, Family: x.family, Zone: x.zone, Timeout: x.expires - tr.nowMs}
		if c := tr.Table.Conn(x.master); c.flags&flagUsed != 0 {
			e.Master = c.Orig
		}
		dst = append(dst, e)
	}
	return dst, true
}

// HelperBytes returns the FTP helper's preallocated memory per tracker.
func HelperBytes(c FTPConfig) int {
	if !c.Enabled {
		return 0
	}
	return max(c.MaxControl, 1)*int(unsafe.Sizeof(helperSlot{})) + max(c.MaxExpectations, 1)*int(unsafe.Sizeof(expectation{}))
}
