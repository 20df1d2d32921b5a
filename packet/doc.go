// Package packet decodes a frame into a flat Parsed value: Ethernet, up to two
// VLAN tags, IPv4 (with options) or IPv6 (with extension headers), and TCP,
// UDP, ICMP or ICMPv6, with fragments flagged.
//
// Decode never returns an error and never allocates: a frame that fails
// validation gets Kind == Malformed and a Reason, and the data plane drops it
// with that reason's counter.
package packet
