// Package tcpstate tracks one TCP connection's state the way Linux's
// nf_conntrack_proto_tcp does: the same states (SYN_SENT … CLOSE), the same
// transition table, and window tracking after Guido van Rooij's "Real
// Stateful TCP Packet Filtering in IP Filter", as netfilter adapted it to
// RFC 793: a segment must intersect the receiver's window and acknowledge
// only data that was seen.
//
// As of 2026-11-25 this follows Linux 5.10's tcp_conntracks table,
// tcp_in_window and tcp_new; what is left out is named in the comments
// (NAT sequence offsets, SYN proxy, challenge-ACK bookkeeping).
//
// A TCB is a plain value inside a conntrack entry; it is not safe for
// concurrent use.
package tcpstate
