package conntrack

import (
	"errors"
	"time"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/packet/header"
)

// Installing connections from another node (HA sync): the peer's entries,
// kept in the external cache, become this table's when this node takes
// over (or at once, active/active), so that their packets are ESTABLISHED
// here rather than INVALID or NEW from the wrong side.

// MaxInjectTimeout bounds an installed connection's timeout (the
// tracker's clock compares expiries in 32-bit milliseconds).
const MaxInjectTimeout = 20 * 24 * time.Hour

// ErrInjectState refuses an entry dpfw cannot install: a TCP connection
// without a state.
var ErrInjectState = errors.New("a TCP connection without a TCP state")

// Inject installs connection e (its tuple, flags, TCP state and timeout;
// not its counters or master) into the table, replacing what the table
// has for that tuple, and reports whether it created the entry. A TCP
// connection's windows are unknown: it is tracked liberally
// (tcpstate.Synced). The entry is confirmed, and makes no event: it came
// from the peer, and telling the peer of it would echo. It never
// allocates; it may early-drop an unassured entry for room, as a new
// connection does.
func (tr *Tracker) Inject(e *Entry) (created bool, err error) {
	if e.Orig.Proto == header.ProtoTCP && (e.TCPState == tcpstate.None || int(e.TCPState) >= tcpstate.NumStates) {
		return false, ErrInjectState
	}
	k := e.Orig
	h := tr.Table.Hash(&k)
	idx, dir, ok := tr.Table.LookupHash(&k, h)
	if ok && dir != Original {
		// The table has the connection the other way round: the peer's
		// view wins, as a new connection on that tuple would.
		tr.delete(idx, EndClosed)
		ok = false
	}
	if !ok {
		if idx, err = tr.Table.InsertHash(&k, h); err == ErrTableFull && tr.earlyDrop(h) {
			idx, err = tr.Table.InsertHash(&k, h)
		}
		if err != nil {
			tr.Stats.TableFullDrops++
			return false, err
		}
		tr.Stats.Created++
		tr.Stats.ByProto[protoClass(k.Proto)]++
		if k.Proto == header.ProtoTCP {
			tr.Stats.TCPByState[tcpstate.None]++
		}
		tr.Table.resetAcct(idx)
		tr.Table.stamp(idx, tr.now)
	}
	tr.install(idx, e)
	if c := tr.Table.Conn(idx); !ok && k.Proto == header.ProtoTCP && !e.Related && tr.helpers != nil && tr.isFTPPort(k.DstPort) {
		tr.attachHelper(idx, c) // an FTP control connection: its next PORT or PASV opens a RELATED one here
	}
	return !ok, nil
}

// install sets entry idx from e.
func (tr *Tracker) install(idx uint32, e *Entry) {
	c := tr.Table.Conn(idx)
	c.flags = c.flags&(flagUsed|flagHelper) | flagConfirmed
	if e.SeenReply {
		c.flags |= flagSeenReply
	}
	if e.Assured {
		c.flags |= flagAssured
	}
	if e.Related && c.flags&flagHelper == 0 && c.master == 0 {
		c.flags |= flagRelated
	}
	c.expires = tr.nowMs + uint32(min(max(e.ExpiresIn, 0), MaxInjectTimeout)/time.Millisecond)
	switch c.Orig.Proto {
	case header.ProtoTCP:
		tr.Stats.TCPByState[c.TCP.State]--
		tcb := tcpstate.Synced(e.TCPState)
		c.TCP, tr.Table.wins[idx] = tcb.Head, tcb.Windows
		tr.Stats.TCPByState[c.TCP.State]++
	case header.ProtoUDP:
		if e.SeenReply {
			c.setStreamAt(tr.nowMs) // a stream already: its replies keep the stream timeout
		} else {
			c.setStreamAt(tr.nowMs + udpStreamMs)
		}
	}
	c.cacheState = 0 // the rule set decides this connection's packets afresh
}

// Errors of InjectExpect.
var (
	ErrNoMaster     = errors.New("the expectation's control connection is not in the table")
	ErrExpectFull   = errors.New("no room for another expectation (conntrack.ftp.max_expectations)")
	ErrNoFTPHelpers = errors.New("the FTP helper is off")
)

// InjectExpect installs an expectation from the peer (an FTP data
// connection announced there): its control connection (x.Master, in
// this table already: install connections first) becomes its master,
// and it expires after x.Timeout. An expectation already here for the
// same master and tuple has its timeout renewed.
func (tr *Tracker) InjectExpect(x *Expectation) error {
	if tr.helpers == nil {
		return ErrNoFTPHelpers
	}
	idx, dir, ok := tr.Table.Lookup(&x.Master)
	if !ok || dir != Original {
		return ErrNoMaster
	}
	e := expectation{src: x.Src, dst: x.Dst, dport: x.DstPort, zone: x.Zone, family: x.Family, master: idx,
		expires: tr.nowMs + min(x.Timeout, uint32(MaxInjectTimeout/time.Millisecond))}
	for i := range tr.expects {
		if y := &tr.expects[i]; y.master == idx && y.src == e.src && y.dst == e.dst && y.dport == e.dport {
			y.expires = e.expires
			return nil
		}
	}
	if len(tr.expects) == cap(tr.expects) {
		tr.FTP.Refused[RefusedFull]++
		return ErrExpectFull
	}
	tr.expects = append(tr.expects, e) // within the preallocated capacity
	tr.FTP.Created++
	return nil
}
