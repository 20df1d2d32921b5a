package daemon

import (
	"strings"
	"testing"

	"github.com/dpfw/dpfw/conntrack"
)

// TestConnFilter: conntrack's filter semantics: -s/-d/--sport/--dport the
// original direction, the reply options the reply one, -u status bits,
// -f family; bad values are refused with what is wanted.
func TestConnFilter(t *testing.T) {
	// Tuples keep an IPv4 address in their first four bytes.
	e := conntrack.Entry{Orig: conntrack.Tuple{Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 0, 2},
		SrcPort: 40000, DstPort: 22, Proto: 6, Family: 4}, SeenReply: true}
	for _, tc := range []struct {
		q    map[string]string
		want bool
	}{
		{map[string]string{"src": "198.18.0.1"}, true},
		{map[string]string{"src": "198.18.0.2"}, false},
		{map[string]string{"reply-src": "198.18.0.2"}, true},
		{map[string]string{"reply-dst": "198.18.0.1", "reply-sport": "22"}, true},
		{map[string]string{"dport": "40000"}, false},
		{map[string]string{"reply-dport": "40000"}, true},
		{map[string]string{"status": "SEEN_REPLY"}, true},
		{map[string]string{"status": "UNREPLIED"}, false},
		{map[string]string{"status": "ASSURED"}, false},
		{map[string]string{"family": "ipv6"}, false},
		{map[string]string{"family": "ipv4", "proto": "tcp"}, true},
	} {
		q := map[string][]string{}
		for k, v := range tc.q {
			q[k] = []string{v}
		}
		f, err := ParseConnFilter(q)
		if err != nil {
			t.Fatalf("%v: %v", tc.q, err)
		}
		if got := f.Match(&e); got != tc.want {
			t.Errorf("%v: match %v; want %v", tc.q, got, tc.want)
		}
	}
	for k, want := range map[string]string{"status": "want ASSURED, SEEN_REPLY or UNREPLIED", "family": "want ipv4 or ipv6",
		"reply-sport": "want 0-65535", "state": "want one of", "reply-src": "want an address or CIDR"} {
		if _, err := ParseConnFilter(map[string][]string{k: {"bogus"}}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s=bogus: %v; want an error saying %q", k, err, want)
		}
	}
}
