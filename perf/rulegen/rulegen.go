// Package rulegen writes large rule sets in iptables-save form, the kind
// that operators generate rather than write, for the compiler's scale
// tests and benchmarks and for comparisons with iptables-restore. Every
// address is in 198.18.0.0/15.
package rulegen

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Flat is an allow-list of n rules, each a distinct /32 source with its own
// destination port, behind an ESTABLISHED rule and a DROP policy: the shape
// of a generated per-host rule set.
func Flat(n int) string {
	var b strings.Builder
	b.Grow(n * 80)
	b.WriteString("*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	b.WriteString("-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A INPUT -s %s/32 -p tcp -m tcp --dport %d -m state --state NEW -j ACCEPT\n", FlatSource(i), FlatPort(i))
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// FlatSource is the source address of Flat's rule i (0-based).
func FlatSource(i int) string {
	return fmt.Sprintf("198.%d.%d.%d", 18+(i>>16)&1, (i>>8)&255, i&255)
}

// FlatPort is the destination port of Flat's rule i.
func FlatPort(i int) int { return 1024 + i%60000 }

// TenantSize is how many rules a tenant's chain of Tenants has.
const TenantSize = 100

// Tenants is a multi-tenant edge of about n rules: FORWARD accepts
// established traffic, drops INVALID, sends every source in a shared
// blocklist chain (a fifth of the rules: /30 to /32 prefixes), then
// jumps to one chain per tenant by the tenant's destination /25. Each
// tenant's chain mixes sources of mixed prefix lengths, single ports,
// port ranges and multiport lists, TCP and UDP, ICMP types, states, a LOG
// rule and a closing REJECT or RETURN. The seed fixes the choices.
func Tenants(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 15))
	var b strings.Builder
	b.Grow(n * 90)
	tenants := max(1, n*4/5/TenantSize)
	block := max(1, n-tenants*TenantSize-tenants-3)
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:blocklist - [0:0]\n")
	for t := 0; t < tenants; t++ {
		fmt.Fprintf(&b, ":tenant%d - [0:0]\n", t)
	}
	b.WriteString("-A FORWARD -m state --state RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -m state --state INVALID -j DROP\n-A FORWARD -j blocklist\n")
	for t := 0; t < tenants; t++ {
		fmt.Fprintf(&b, "-A FORWARD -d %s -j tenant%d\n", TenantPrefix(t), t)
	}
	for i := 0; i < block; i++ {
		fmt.Fprintf(&b, "-A blocklist -s %s -j DROP\n", cidr(r, 30+r.IntN(3)))
	}
	for t := 0; t < tenants; t++ {
		writeTenant(&b, r, t)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// TenantPrefix is tenant t's destination prefix in Tenants.
func TenantPrefix(t int) string {
	return fmt.Sprintf("198.%d.%d.%d/25", 18+(t>>9)&1, (t>>1)&255, (t&1)*128)
}

// cidr is a random prefix of the given length in 198.18.0.0/15.
func cidr(r *rand.Rand, bits int) string {
	a := uint32(198)<<24 | uint32(18)<<16 | r.Uint32N(1<<17)
	a &^= 1<<(32-bits) - 1
	return fmt.Sprintf("%d.%d.%d.%d/%d", a>>24, a>>16&255, a>>8&255, a&255, bits)
}

func writeTenant(b *strings.Builder, r *rand.Rand, t int) {
	c := fmt.Sprintf("tenant%d", t)
	for i := 0; i < TenantSize-2; i++ {
		switch r.IntN(8) {
		case 0, 1:
			fmt.Fprintf(b, "-A %s -s %s -p tcp -m tcp --dport %d -m state --state NEW -j ACCEPT\n", c, cidr(r, 16+r.IntN(17)), 1+r.IntN(1024))
		case 2:
			lo := 1024 + r.IntN(50000)
			fmt.Fprintf(b, "-A %s -s %s -p udp -m udp --dport %d:%d -j ACCEPT\n", c, cidr(r, 24+r.IntN(9)), lo, lo+r.IntN(1000))
		case 3:
			fmt.Fprintf(b, "-A %s -p tcp -m multiport --dports %d,%d,%d:%d -j ACCEPT\n", c, 1+r.IntN(1024), 1+r.IntN(1024), 8000+r.IntN(100), 8100+r.IntN(100))
		case 4:
			fmt.Fprintf(b, "-A %s -s %s -j DROP\n", c, cidr(r, 26+r.IntN(7)))
		case 5:
			fmt.Fprintf(b, "-A %s -s %s -p tcp -m tcp --sport %d:65535 --dport %d -j ACCEPT\n", c, cidr(r, 20+r.IntN(13)), 1024+r.IntN(1000), 1+r.IntN(1024))
		case 6:
			fmt.Fprintf(b, "-A %s -s %s -p icmp -m icmp --icmp-type %s -j ACCEPT\n", c, cidr(r, 16+r.IntN(17)), []string{"8", "0", "3/4", "11"}[r.IntN(4)])
		default:
			fmt.Fprintf(b, "-A %s -d %s -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -m state --state NEW -j ACCEPT\n", c, cidr(r, 27+r.IntN(6)))
		}
	}
	fmt.Fprintf(b, "-A %s -p tcp -m tcp --dport 23 -j LOG --log-prefix \"%s telnet \"\n", c, c)
	if t%2 == 0 {
		fmt.Fprintf(b, "-A %s -j REJECT --reject-with icmp-port-unreachable\n", c)
	} else {
		fmt.Fprintf(b, "-A %s -j RETURN\n", c)
	}
}

// SetEntries is n distinct set entries (addresses and prefixes), none
// adjacent to another, so a set keeps them all: IPv4 /32s in 198.18.0.0/15
// (one entry in eight, at most 60,000), the rest IPv6 /128s and /96s in
// 2001:2::/48. The order is shuffled by the seed.
func SetEntries(n int, seed uint64) []string {
	out := make([]string, n)
	v4 := 0
	for i := range out {
		switch {
		case i%8 == 0 && v4 < 60000:
			a := 2 * v4
			out[i] = fmt.Sprintf("198.%d.%d.%d", 18+a>>16, a>>8&255, a&255)
			v4++
		case i%2 == 0:
			out[i] = fmt.Sprintf("2001:2::1:0:%x:%x", (2*i)>>16, (2*i)&0xffff)
		default:
			out[i] = fmt.Sprintf("2001:2::%x:%x:0:0/96", (2*i)>>16, (2*i)&0xffff)
		}
	}
	rand.New(rand.NewPCG(seed, 1)).Shuffle(n, func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// SetFile is SetEntries as a set file, one entry per line.
func SetFile(n int, seed uint64) string {
	var b strings.Builder
	for _, e := range SetEntries(n, seed) {
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return b.String()
}
