package conntrack

// Per-connection accounting, as netfilter's nf_conntrack_acct (off by
// default there too): packets and bytes (IP length) per direction, kept in
// an array beside the entries, allocated only when Config.Accounting is
// set, so that a table without it pays neither memory nor a cache line per
// packet. A packet is counted where netfilter counts it
// (nf_ct_refresh_acct): when it moves its connection on or creates it;
// INVALID packets, packets TCP tracking ignores and ICMP errors are not.

// Acct is one connection's counters, by direction (Original, Reply).
type Acct struct {
	Packets, Bytes [2]uint64
}

// AcctBytes is the memory accounting takes per connection.
const AcctBytes = 32

// enableAcct allocates the table's counters.
func (t *Table) enableAcct() {
	t.acct, t.mem[3] = allocArray[Acct](len(t.conns))
}

// account counts a packet of l bytes in direction dir of entry idx.
func (t *Table) account(idx uint32, dir Dir, l int) {
	if t.acct != nil {
		a := &t.acct[idx]
		a.Packets[dir&1]++
		a.Bytes[dir&1] += uint64(l)
	}
}

// resetAcct zeroes a new entry's counters.
func (t *Table) resetAcct(idx uint32) {
	if t.acct != nil {
		t.acct[idx] = Acct{}
	}
}

// Per-connection timestamps, as netfilter's nf_conntrack_timestamp (off by
// default there too): when each connection was created, in the tracker's
// clock, in an array beside the entries allocated only when
// Config.Timestamps is set.

// StampBytes is the memory timestamps take per connection.
const StampBytes = 8

// enableStamps allocates the table's start times.
func (t *Table) enableStamps() {
	t.start, t.mem[4] = allocArray[int64](len(t.conns))
}

// stamp records that entry idx starts at now.
func (t *Table) stamp(idx uint32, now int64) {
	if t.start != nil {
		t.start[idx] = now
	}
}
