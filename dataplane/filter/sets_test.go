package filter_test

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
	"github.com/dpfw/dpfw/perf/rulegen"
)

// mixedSet is rulegen.SetEntries as prefixes.
func mixedSet(n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i, e := range rulegen.SetEntries(n, 1) {
		if a, err := netip.ParseAddr(e); err == nil {
			ps[i] = netip.PrefixFrom(a, a.BitLen())
			continue
		}
		ps[i] = netip.MustParsePrefix(e)
	}
	return ps
}

// TestAddrSet compares AddrSet.Contains with a linear search over the
// prefixes, for addresses inside and near them.
func TestAddrSet(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	ps := mixedSet(4000)
	s := filter.NewAddrSet("t", ps)
	for i := 0; i < 20000; i++ {
		a := ps[r.IntN(len(ps))].Addr().As16()
		b := a
		b[15] ^= byte(r.IntN(256))
		for _, x := range [][16]byte{a, b} {
			addr := netip.AddrFrom16(x)
			v6 := !addr.Is4In6()
			key := x
			if !v6 {
				copy(key[:4], x[12:])
				addr = addr.Unmap()
			}
			want := false
			for _, p := range ps {
				if p.Contains(addr) {
					want = true
					break
				}
			}
			if got := s.Contains(&key, v6); got != want {
				t.Fatalf("%v: %v; want %v", addr, got, want)
			}
		}
	}
	if v4, v6 := s.Ranges(); v4+v6 == 0 || s.Bytes() != v4*8+v6*32 {
		t.Errorf("ranges %d+%d, %d bytes", v4, v6, s.Bytes())
	}
}

// BenchmarkAddrSet builds sets of 1,000 and 1,000,000 mixed entries, and
// classifies a packet against a rule matching the set, in and out of it.
func BenchmarkAddrSet(b *testing.B) {
	for _, n := range []int{1000, 1_000_000} {
		ps := mixedSet(n)
		b.Run(fmt.Sprintf("build_%d", n), func(b *testing.B) {
			for b.Loop() {
				filter.NewAddrSet("big", ps)
			}
			b.ReportMetric(float64(filter.NewAddrSet("big", ps).Bytes())/float64(n), "B/entry")
		})
		rs, err := rules.ParseIptablesSets("bench", "-P INPUT ACCEPT\n-A INPUT -m set --match-set big src -j DROP\n", map[string][]netip.Prefix{"big": ps})
		if err != nil {
			b.Fatal(err)
		}
		f, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{}}, 1)
		if err != nil {
			b.Fatal(err)
		}
		in := &packet.Parsed{Kind: packet.IPv6, Proto: 17}
		in.Src = ps[n/2].Addr().As16()
		out := &packet.Parsed{Kind: packet.IPv6, Proto: 17, Src: in.Src}
		out.Src[15]++
		for name, p := range map[string]*packet.Parsed{"member": in, "other": out} {
			b.Run(fmt.Sprintf("lookup_%s_%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f.Run(filter.Ctx{}, p, rules.StateNew, filter.HookInput, 0, 0)
				}
			})
		}
	}
}
