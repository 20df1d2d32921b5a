package ruleset

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/perf/rulegen"
)

func TestParseSetFile(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
		err        string
	}{
		{name: "plain", text: "# blocklist\n198.18.0.1\n\n  198.18.1.7/24  \n2001:2::/48\r\n198.18.2.1-198.18.2.6\n",
			want: []string{"198.18.0.1/32", "198.18.1.0/24", "2001:2::/48", "198.18.2.1/32", "198.18.2.2/31", "198.18.2.4/31", "198.18.2.6/32"}},
		{name: "ipset", text: "create other hash:ip family inet\nadd other 198.18.9.9\ncreate bad hash:net family inet hashsize 1024 maxelem 65536\nadd bad 198.18.0.0/16 timeout 300\nadd bad 198.19.0.1 comment \"x\"\n",
			want: []string{"198.18.0.0/16", "198.19.0.1/32"}},
		{name: "bad token", text: "198.18.0.1\n  198.18.0.300\n", err: "f:2:3: \"198.18.0.300\": want an address, CIDR or range"},
		{name: "two per line", text: "198.18.0.1 198.18.0.2\n", err: "f:1:12: \"198.18.0.2\": one address, CIDR or range per line"},
		{name: "type", text: "create bad hash:ip,port family inet\n", err: "f:1:12: \"hash:ip,port\": dpfw sets hold addresses"},
		{name: "nomatch", text: "create bad hash:net\nadd bad 198.18.0.0/24 nomatch\n", err: "f:2:23: \"nomatch\": nomatch entries"},
		{name: "other set", text: "create other hash:ip\nadd other 198.18.0.1\n", err: "no set named \"bad\""},
		{name: "range", text: "198.18.0.9-198.18.0.1\n", err: "want a range of one family"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := ParseSetFile("bad", "f", tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

// TestRangePrefixes: ranges are covered exactly, by the fewest prefixes.
func TestRangePrefixes(t *testing.T) {
	for _, tc := range []struct {
		lo, hi string
		n      int
	}{
		{"198.18.0.0", "198.19.255.255", 1}, {"198.18.0.1", "198.18.0.1", 1}, {"198.18.0.1", "198.18.0.254", 14},
		{"2001:2::1", "2001:2::ffff", 16}, {"0.0.0.0", "255.255.255.255", 1},
	} {
		ps := rangePrefixes(netip.MustParseAddr(tc.lo), netip.MustParseAddr(tc.hi))
		if len(ps) != tc.n {
			t.Errorf("%s-%s: %v; want %d prefixes", tc.lo, tc.hi, ps, tc.n)
		}
		if ps[0].Addr() != netip.MustParseAddr(tc.lo) || lastAddr(ps[len(ps)-1]) != netip.MustParseAddr(tc.hi) {
			t.Errorf("%s-%s: %v does not span the range", tc.lo, tc.hi, ps)
		}
		for i := 1; i < len(ps); i++ {
			if lastAddr(ps[i-1]).Next() != ps[i].Addr() {
				t.Errorf("%s-%s: %v has a gap or overlap", tc.lo, tc.hi, ps)
			}
		}
	}
}

// BenchmarkParseSetFile reads a 1,000,000-entry set file, IPv4 and IPv6
// addresses and prefixes mixed.
func BenchmarkParseSetFile(b *testing.B) {
	text := rulegen.SetFile(1_000_000, 1)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		ps, err := ParseSetFile("big", "big", text)
		if err != nil || len(ps) != 1_000_000 {
			b.Fatal(len(ps), err)
		}
	}
}

// FuzzParseSetFile: any text is read or refused without a panic; what is
// read is masked prefixes, and printing them one per line reads back the
// same.
func FuzzParseSetFile(f *testing.F) {
	for _, s := range []string{"198.18.0.1\n198.18.0.0/15\n", "# c\n\n2001:2::/48\r\n", "198.18.0.1-198.18.0.9\n",
		"create s hash:net family inet\nadd s 198.18.0.0/24 timeout 5\n", "add s 1.2.3.4 nomatch\n", "a b c\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		ps, err := ParseSetFile("s", "f", text)
		if err != nil {
			return
		}
		var b strings.Builder
		for _, p := range ps {
			if p != p.Masked() {
				t.Fatalf("%v is not masked", p)
			}
			b.WriteString(p.String() + "\n")
		}
		again, err := ParseSetFile("s", "f", b.String())
		if err != nil || !slices.Equal(again, ps) {
			t.Fatalf("printed set reads back as %v, %v; want %v", again, err, ps)
		}
	})
}
