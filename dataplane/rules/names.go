package rules

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// icmpName is one ICMP type name as iptables' icmp match knows it: type,
// and code range (0-255 for every code of the type).
type icmpName struct {
	name             string
	typ, cmin, cmax  int
	alias, subHeader bool
}

// icmpNames are libxt_icmp's names in its order (iptables -p icmp -h, as
// of iptables 1.8.9), with the numbers iptables-save prints for them.
// Lookups are by case-insensitive prefix, an ambiguous prefix is an error,
// as in libxt_icmp's parse_icmp.
var icmpNames = []icmpName{
	{name: "any", typ: 0xff, cmin: 0, cmax: 0xff},
	{name: "echo-reply", typ: 0, cmin: 0, cmax: 0xff}, {name: "pong", typ: 0, cmin: 0, cmax: 0xff, alias: true},
	{name: "destination-unreachable", typ: 3, cmin: 0, cmax: 0xff},
	{name: "network-unreachable", typ: 3}, {name: "host-unreachable", typ: 3, cmin: 1, cmax: 1},
	{name: "protocol-unreachable", typ: 3, cmin: 2, cmax: 2}, {name: "port-unreachable", typ: 3, cmin: 3, cmax: 3},
	{name: "fragmentation-needed", typ: 3, cmin: 4, cmax: 4}, {name: "source-route-failed", typ: 3, cmin: 5, cmax: 5},
	{name: "network-unknown", typ: 3, cmin: 6, cmax: 6}, {name: "host-unknown", typ: 3, cmin: 7, cmax: 7},
	{name: "network-prohibited", typ: 3, cmin: 9, cmax: 9}, {name: "host-prohibited", typ: 3, cmin: 10, cmax: 10},
	{name: "TOS-network-unreachable", typ: 3, cmin: 11, cmax: 11}, {name: "TOS-host-unreachable", typ: 3, cmin: 12, cmax: 12},
	{name: "communication-prohibited", typ: 3, cmin: 13, cmax: 13}, {name: "host-precedence-violation", typ: 3, cmin: 14, cmax: 14},
	{name: "precedence-cutoff", typ: 3, cmin: 15, cmax: 15},
	{name: "source-quench", typ: 4, cmin: 0, cmax: 0xff},
	{name: "redirect", typ: 5, cmin: 0, cmax: 0xff},
	{name: "network-redirect", typ: 5}, {name: "host-redirect", typ: 5, cmin: 1, cmax: 1},
	{name: "TOS-network-redirect", typ: 5, cmin: 2, cmax: 2}, {name: "TOS-host-redirect", typ: 5, cmin: 3, cmax: 3},
	{name: "echo-request", typ: 8, cmin: 0, cmax: 0xff}, {name: "ping", typ: 8, cmin: 0, cmax: 0xff, alias: true},
	{name: "router-advertisement", typ: 9, cmin: 0, cmax: 0xff}, {name: "router-solicitation", typ: 10, cmin: 0, cmax: 0xff},
	{name: "time-exceeded", typ: 11, cmin: 0, cmax: 0xff}, {name: "ttl-exceeded", typ: 11, cmin: 0, cmax: 0xff, alias: true},
	{name: "ttl-zero-during-transit", typ: 11}, {name: "ttl-zero-during-reassembly", typ: 11, cmin: 1, cmax: 1},
	{name: "parameter-problem", typ: 12, cmin: 0, cmax: 0xff},
	{name: "ip-header-bad", typ: 12}, {name: "required-option-missing", typ: 12, cmin: 1, cmax: 1},
	{name: "timestamp-request", typ: 13, cmin: 0, cmax: 0xff}, {name: "timestamp-reply", typ: 14, cmin: 0, cmax: 0xff},
	{name: "address-mask-request", typ: 17, cmin: 0, cmax: 0xff}, {name: "address-mask-reply", typ: 18, cmin: 0, cmax: 0xff},
}

// icmp6Names are libxt_icmp6's names (ip6tables -p icmpv6 -h, iptables
// 1.8.9). There is no "any".
var icmp6Names = []icmpName{
	{name: "destination-unreachable", typ: 1, cmin: 0, cmax: 0xff},
	{name: "no-route", typ: 1}, {name: "communication-prohibited", typ: 1, cmin: 1, cmax: 1},
	{name: "beyond-scope", typ: 1, cmin: 2, cmax: 2}, {name: "address-unreachable", typ: 1, cmin: 3, cmax: 3},
	{name: "port-unreachable", typ: 1, cmin: 4, cmax: 4}, {name: "failed-policy", typ: 1, cmin: 5, cmax: 5},
	{name: "reject-route", typ: 1, cmin: 6, cmax: 6},
	{name: "packet-too-big", typ: 2, cmin: 0, cmax: 0xff},
	{name: "time-exceeded", typ: 3, cmin: 0, cmax: 0xff}, {name: "ttl-exceeded", typ: 3, cmin: 0, cmax: 0xff, alias: true},
	{name: "ttl-zero-during-transit", typ: 3}, {name: "ttl-zero-during-reassembly", typ: 3, cmin: 1, cmax: 1},
	{name: "parameter-problem", typ: 4, cmin: 0, cmax: 0xff},
	{name: "bad-header", typ: 4}, {name: "unknown-header-type", typ: 4, cmin: 1, cmax: 1}, {name: "unknown-option", typ: 4, cmin: 2, cmax: 2},
	{name: "echo-request", typ: 128, cmin: 0, cmax: 0xff}, {name: "ping", typ: 128, cmin: 0, cmax: 0xff, alias: true},
	{name: "echo-reply", typ: 129, cmin: 0, cmax: 0xff}, {name: "pong", typ: 129, cmin: 0, cmax: 0xff, alias: true},
	{name: "router-solicitation", typ: 133, cmin: 0, cmax: 0xff}, {name: "router-advertisement", typ: 134, cmin: 0, cmax: 0xff},
	{name: "neighbour-solicitation", typ: 135, cmin: 0, cmax: 0xff}, {name: "neighbor-solicitation", typ: 135, cmin: 0, cmax: 0xff, alias: true},
	{name: "neighbour-advertisement", typ: 136, cmin: 0, cmax: 0xff}, {name: "neighbor-advertisement", typ: 136, cmin: 0, cmax: 0xff, alias: true},
	{name: "redirect", typ: 137, cmin: 0, cmax: 0xff},
}

// parseICMP reads an --icmp-type / --icmpv6-type value as libxt_icmp and
// libxt_icmp6 do: a name (case-insensitive, any unambiguous prefix), or
// TYPE[/CODE] in decimal. It returns the type and the code (-1: any code);
// type -1 is "any" (IPv4 only, also written as type 255).
func parseICMP(s string, v6 bool) (typ, code int, err error) {
	names, what := icmpNames, "ICMP"
	if v6 {
		names, what = icmp6Names, "ICMPv6"
	}
	match := -1
	for i, n := range names {
		if len(s) <= len(n.name) && strings.EqualFold(n.name[:len(s)], s) {
			if match >= 0 {
				return 0, 0, fmt.Errorf("ambiguous %s type: %s or %s?", what, names[match].name, n.name)
			}
			match = i
		}
	}
	if match >= 0 && s != "" {
		n := names[match]
		if n.typ == 0xff {
			return -1, -1, nil
		}
		if n.cmin == 0 && n.cmax == 0xff {
			return n.typ, -1, nil
		}
		return n.typ, n.cmin, nil
	}
	ts, cs, hasCode := strings.Cut(s, "/")
	t, err := strconv.Atoi(ts)
	if err != nil || t < 0 || t > 255 {
		return 0, 0, fmt.Errorf("unknown %s type: want a name (%s -h lists them: echo-request, destination-unreachable, …) or TYPE[/CODE], numbers 0-255", what, map[bool]string{false: "iptables -p icmp", true: "ip6tables -p icmpv6"}[v6])
	}
	c := -1
	if hasCode {
		c, err = strconv.Atoi(cs)
		if err != nil || c < 0 || c > 255 {
			return 0, 0, fmt.Errorf("unknown %s code: want TYPE/CODE with numbers 0-255", what)
		}
	}
	if t == 255 && !v6 {
		return -1, -1, nil // libxt_icmp: type 255 is "any"
	}
	return t, c, nil
}

// rejectType is one --reject-with value: its canonical name, its aliases,
// and the family it belongs to.
type rejectType struct {
	name    string
	aliases []string
	family  Family
}

// rejectTypes are libipt_REJECT's and libip6t_REJECT's types (iptables
// 1.8.9) that dpfw can answer with (dataplane/reject). The others
// (icmp6-policy-fail, icmp6-reject-route) are refused with that reason.
var rejectTypes = []rejectType{
	{"icmp-net-unreachable", []string{"net-unreach"}, 4},
	{"icmp-host-unreachable", []string{"host-unreach"}, 4},
	{"icmp-proto-unreachable", []string{"proto-unreach"}, 4},
	{"icmp-port-unreachable", []string{"port-unreach"}, 4},
	{"icmp-net-prohibited", []string{"net-prohib"}, 4},
	{"icmp-host-prohibited", []string{"host-prohib"}, 4},
	{"icmp-admin-prohibited", []string{"admin-prohib"}, 4},
	{"tcp-reset", []string{"tcp-rst"}, 0},
	{"icmp6-no-route", []string{"no-route"}, 6},
	{"icmp6-adm-prohibited", []string{"adm-prohibited"}, 6},
	{"icmp6-addr-unreachable", []string{"addr-unreach"}, 6},
	{"icmp6-port-unreachable", []string{"port-unreach"}, 6},
}

// parseRejectWith resolves a --reject-with value for family fam (0: not
// known yet; then the value decides it).
func parseRejectWith(s string, fam Family) (string, Family, error) {
	switch s {
	case "icmp6-policy-fail", "policy-fail", "icmp6-reject-route", "reject-route":
		return "", 0, fmt.Errorf("this reject type is not supported by dpfw; use icmp6-adm-prohibited")
	}
	for _, want := range []Family{fam, 4, 6} {
		for _, t := range rejectTypes {
			if t.family != 0 && want != 0 && t.family != want {
				continue
			}
			if s == t.name || (len(t.aliases) > 0 && s == t.aliases[0]) {
				if fam != 0 && t.family != 0 && t.family != fam {
					break
				}
				return t.name, t.family, nil
			}
		}
		if fam != 0 {
			break
		}
	}
	var names []string
	for _, t := range rejectTypes {
		if fam == 0 || t.family == 0 || t.family == fam {
			names = append(names, t.name)
		}
	}
	return "", 0, fmt.Errorf("unknown reject type for IPv%s: want %s", familyName(fam), strings.Join(names, ", "))
}

func familyName(f Family) string {
	switch f {
	case 4:
		return "4"
	case 6:
		return "6"
	}
	return "4 or IPv6"
}

// defaultRejectWith is what REJECT answers without --reject-with.
func defaultRejectWith(f Family) string {
	if f == 6 {
		return "icmp6-port-unreachable"
	}
	return "icmp-port-unreachable"
}

// logLevels are syslog's level names as the LOG target accepts them
// (libxt_LOG, iptables 1.8.9: "panic" too; not "err" or "warn").
var logLevels = []string{"emerg", "alert", "crit", "error", "warning", "notice", "info", "debug"}

// parseLogLevel reads --log-level: a name or 0-7, as libxt_LOG does.
func parseLogLevel(s string) (int, error) {
	if s == "panic" {
		return 0, nil
	}
	for i, n := range logLevels {
		if s == n {
			return i, nil
		}
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 7 {
		return n, nil
	}
	return 0, fmt.Errorf("unknown log level: want 0-7 or emerg, alert, crit, error, warning, notice, info, debug")
}

// tcpFlagNames are the flags iptables' tcp match names (libxt_tcp: ECE and
// CWR have no name there, and ALL is these six).
var tcpFlagNames = []struct {
	name string
	bit  uint8
}{{"FIN", 0x01}, {"SYN", 0x02}, {"RST", 0x04}, {"PSH", 0x08}, {"ACK", 0x10}, {"URG", 0x20}}

// tcpFlagsAll is iptables' ALL: FIN,SYN,RST,PSH,ACK,URG.
const tcpFlagsAll = 0x3f

// parseTCPFlags reads a --tcp-flags list as libxt_tcp does.
func parseTCPFlags(s string) (uint8, error) {
	var m uint8
	for _, f := range strings.Split(s, ",") {
		switch strings.ToUpper(f) {
		case "ALL":
			m |= tcpFlagsAll
			continue
		case "NONE":
			continue
		}
		found := false
		for _, fb := range tcpFlagNames {
			if strings.EqualFold(f, fb.name) {
				m |= fb.bit
				found = true
			}
		}
		if !found {
			msg := "unknown TCP flag %q; want FIN, SYN, RST, PSH, ACK, URG, ALL or NONE, comma-separated"
			if strings.EqualFold(f, "ECE") || strings.EqualFold(f, "CWR") {
				msg += " (iptables has no names for ECE and CWR; use -m u32 in iptables, or match the other flags)"
			}
			return 0, fmt.Errorf(msg, f)
		}
	}
	return m, nil
}

// saveTCPFlags prints a flag mask as iptables-save does.
func saveTCPFlags(m uint8) string {
	if m == 0 {
		return "NONE"
	}
	var out []string
	for _, f := range tcpFlagNames {
		if m&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return strings.Join(out, ",")
}

// protocols is /etc/protocols: names (and aliases, lower case) to numbers
// and numbers to their first name, read once.
var protocols = sync.OnceValue(func() (p struct {
	byName map[string]int
	name   [256]string
}) {
	p.byName = map[string]int{}
	readTable("/etc/protocols", func(fs []string) {
		n, err := strconv.Atoi(fs[1])
		if err != nil || n < 0 || n > 255 {
			return
		}
		if p.name[n] == "" {
			p.name[n] = fs[0]
		}
		for _, a := range append([]string{fs[0]}, fs[2:]...) {
			if _, dup := p.byName[strings.ToLower(a)]; !dup {
				p.byName[strings.ToLower(a)] = n
			}
		}
	})
	// xtables' own names, for machines without /etc/protocols.
	for n, v := range map[string]int{"tcp": 6, "udp": 17, "udplite": 136, "icmp": 1, "icmpv6": 58, "ipv6-icmp": 58, "esp": 50, "ah": 51, "sctp": 132, "mh": 135, "ipv6-mh": 135, "gre": 47} {
		if _, ok := p.byName[n]; !ok {
			p.byName[n] = v
		}
		if p.name[v] == "" && n != "icmpv6" && n != "mh" {
			p.name[v] = n
		}
	}
	return p
})

// parseProtocol reads -p: a name from /etc/protocols (or xtables' own:
// icmpv6), "all", or 0-255 (0: all). It returns -1 for all.
func parseProtocol(s string) (int, error) {
	l := strings.ToLower(s)
	if l == "all" {
		return -1, nil
	}
	if n, ok := protocols().byName[l]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 255 {
		return 0, fmt.Errorf("unknown protocol: want a name from /etc/protocols (tcp, udp, icmp, icmpv6, sctp, igmp, …), all, or a number 0-255")
	}
	if n == 0 {
		return -1, nil
	}
	return n, nil
}

// protoSaveName is -p's value as iptables-save prints it: the protocol's
// name in /etc/protocols, or its number.
func protoSaveName(p int) string {
	if p >= 0 && p < 256 {
		if n := protocols().name[p]; n != "" {
			return n
		}
	}
	return strconv.Itoa(p)
}

// parsePort reads a port: a number 0-65535 or a service name from
// /etc/services of network ("tcp", "udp", "sctp"; "": any), as the
// module that reads it does in iptables 1.8.9.
func parsePort(s string, network string) (uint16, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 65535 {
			return 0, fmt.Errorf("invalid port: want 0-65535")
		}
		return uint16(n), nil
	}
	nets := []string{network}
	if network == "" {
		nets = []string{"tcp", "udp", "sctp"}
	}
	for _, nw := range nets {
		if p, ok := services()[nw+"/"+s]; ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("invalid port/service: want a number 0-65535, a range such as 1024:65535, or a service name from /etc/services (ssh, http, imaps, …)")
}

// services is /etc/services: "tcp/NAME" and "udp/NAME" (aliases too) to
// ports, read once. (Not net.LookupPort: the packet-path packages build
// without cgo, and net would bring its resolver in.)
var services = sync.OnceValue(func() map[string]uint16 {
	m := map[string]uint16{}
	readTable("/etc/services", func(fs []string) {
		port, proto, ok := strings.Cut(fs[1], "/")
		n, err := strconv.Atoi(port)
		if !ok || err != nil || n < 0 || n > 65535 {
			return
		}
		for _, name := range append([]string{fs[0]}, fs[2:]...) {
			if _, dup := m[proto+"/"+name]; !dup {
				m[proto+"/"+name] = uint16(n)
			}
		}
	})
	return m
})

// readTable calls fn with the fields of each line of a netbase table
// (/etc/protocols, /etc/services) that has at least two, comments cut.
// A missing file is an empty table.
func readTable(path string, fn func(fields []string)) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if fs := strings.Fields(line); len(fs) >= 2 {
			fn(fs)
		}
	}
}

// parsePortRange reads PORT, PORT:PORT, :PORT or PORT: (open ends are 0
// and 65535).
func parsePortRange(s string, network string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, ":")
	if !isRange {
		p, err := parsePort(s, network)
		return PortRange{p, p}, err
	}
	l, h := uint16(0), uint16(65535)
	var err error
	if lo != "" {
		if l, err = parsePort(lo, network); err != nil {
			return PortRange{}, err
		}
	}
	if hi != "" {
		if h, err = parsePort(hi, network); err != nil {
			return PortRange{}, err
		}
	}
	if l > h {
		return PortRange{}, fmt.Errorf("invalid port range (min > max): write %d:%d (iptables-nft accepts a reversed range for -p udp, where it matches nothing; dpfw refuses it)", h, l)
	}
	return PortRange{l, h}, nil
}
