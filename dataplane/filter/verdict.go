package filter

import "fmt"

// Verdict is what happens to a packet.
type Verdict uint8

// Verdicts.
const (
	// Drop frees the packet.
	Drop Verdict = iota
	// Accept forwards the packet to the paired port.
	Accept
	// Reject drops the packet and answers it (TCP RST or ICMP unreachable).
	Reject
)

var verdictNames = [...]string{"DROP", "ACCEPT", "REJECT"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// DropReason says why a packet was dropped. Each reason has its own counter.
type DropReason uint8

// Drop reasons. The malformed-frame reasons come first and follow
// packet.Reason one for one (DropMalformed + packet.Reason).
const (
	DropNone DropReason = iota
	DropTruncatedL2
	DropBadIPv4
	DropBadIPv6
	DropBadExtHeader
	DropTruncatedL4
	DropBadTCPOffset
	DropBadUDPLength
	DropTinyFragment
	DropTooManyTags
	// DropOversize: a frame larger than one mbuf (packet.ReasonOversize).
	DropOversize
	// DropNonIP: a non-IP frame (ARP, …) while non-IP forwarding is off.
	DropNonIP
	// DropRule: a rule or chain policy said DROP or REJECT.
	DropRule
	// DropInvalid: conntrack state INVALID and no rule accepted it.
	DropInvalid
	// DropTableFull: no room in the connection table for a new flow.
	DropTableFull
	// DropTxFull: the tx queue refused the packet (back-pressure).
	DropTxFull
	// DropSteerFull: the owning worker's ring was full (software steering).
	DropSteerFull
	// DropNoRoute: the input port belongs to no link.
	DropNoRoute
	// DropFragment: a fragment of a datagram already complete or dead, or
	// held for a datagram whose id a new first fragment reused.
	DropFragment
	// DropShutdown: freed while stopping.
	DropShutdown
	// DropBadChecksum: a wrong IPv4 header or TCP/UDP/ICMP checksum
	// (dataplane.checksum; conntrack state INVALID).
	DropBadChecksum
	// DropNewRate: a new connection over conntrack.new_per_second.
	DropNewRate
	// DropHelper: the FTP helper found a malformed announcement in the
	// segment (nf_conntrack_ftp drops it too).
	DropHelper
	// DropFragmentOverlap: a fragment overlapping part of one already seen
	// (RFC 5722; the kernel then discards the whole datagram, and dpfw
	// drops its remaining fragments), or an empty fragment or one past the
	// datagram's announced end (dropped alone, as the kernel does).
	DropFragmentOverlap
	// DropFragmentDup: a fragment wholly inside one already seen (a
	// duplicate: the kernel keeps the first copy and drops this one).
	DropFragmentDup
	// DropFragmentTimeout: a held fragment of a datagram that did not
	// complete within 30 s (netfilter's ipfrag_time).
	DropFragmentTimeout
	// DropFragmentMemory: a fragment with no room to be held (the
	// worker's or its datagram's bound), or of a datagram pushed out of
	// the fragment table; its datagram is dropped.
	DropFragmentMemory
	// DropStandby: an HA backup (sync.role backup, not promoted) forwards
	// nothing.
	DropStandby
	// NumDropReasons is the number of reasons; not a reason.
	NumDropReasons
)

var dropNames = [...]string{
	"none", "truncated_l2", "bad_ipv4_header", "bad_ipv6_header", "bad_ipv6_ext_header",
	"truncated_l4", "bad_tcp_offset", "bad_udp_length", "tiny_fragment", "too_many_vlan_tags",
	"oversize", "non_ip", "rule", "ct_invalid", "table_full", "tx_full", "steer_full", "no_route",
	"fragment", "shutdown", "bad_checksum", "ct_new_rate", "ftp_malformed",
	"fragment_overlap", "fragment_duplicate", "fragment_timeout", "fragment_memory", "standby",
}

func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("drop(%d)", uint8(r))
}
