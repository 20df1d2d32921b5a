package daemon

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane"
)

// ParseTraceFilter reads the conntrack-style filters and the port name,
// and refuses what cannot select a packet with the fix.
func TestParseTraceFilter(t *testing.T) {
	ports := map[string]uint16{"outside": 0, "inside": 1}
	f, err := ParseTraceFilter(url.Values{"proto": {"tcp"}, "src": {"198.18.0.0/15"}, "dst": {"2001:2::1"}, "dport": {"22"}, "port": {"inside"}}, ports)
	want := dataplane.TraceFilter{Proto: 6, Src: netip.MustParsePrefix("198.18.0.0/15"), Dst: netip.MustParsePrefix("2001:2::1/128"), DstPort: 22, In: 1}
	if err != nil || f != want {
		t.Fatalf("got %+v, %v; want %+v", f, err, want)
	}
	if f, err := ParseTraceFilter(url.Values{}, ports); err != nil || f != (dataplane.TraceFilter{In: dataplane.AnyPort}) {
		t.Fatalf("no filter: %+v, %v; want every packet", f, err)
	}
	for _, tt := range []struct {
		q    url.Values
		want string
	}{
		{url.Values{"proto": {"tcpp"}}, `proto "tcpp"`},
		{url.Values{"src": {"198.18.0.1/40"}}, `src "198.18.0.1/40"`},
		{url.Values{"dport": {"70000"}}, `dport "70000"`},
		{url.Values{"proto": {"icmp"}, "sport": {"5"}}, "need -p tcp, udp or sctp"},
		{url.Values{"port": {"dmz"}}, `port "dmz": no such port (the config has inside, outside)`},
	} {
		if _, err := ParseTraceFilter(tt.q, ports); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want %q", tt.q, err, tt.want)
		}
	}
}

// Slots: eight traces at once, the ninth refused; detaching frees a slot
// and the last one leaves the workers no set.
func TestTraceSlots(t *testing.T) {
	d := &Daemon{}
	for i := 0; i < dataplane.MaxTraces; i++ {
		if s, err := d.attachTrace(dataplane.TraceFilter{DstPort: uint16(i + 1)}); err != nil || s != i {
			t.Fatalf("trace %d: slot %d, %v", i, s, err)
		}
	}
	if _, err := d.attachTrace(dataplane.TraceFilter{}); err == nil || !strings.Contains(err.Error(), "8 traces are attached already") {
		t.Fatalf("a ninth trace: %v", err)
	}
	d.detachTrace(3)
	if s, err := d.attachTrace(dataplane.TraceFilter{}); err != nil || s != 3 {
		t.Fatalf("after detaching slot 3: slot %d, %v", s, err)
	}
	for i := 0; i < dataplane.MaxTraces; i++ {
		d.detachTrace(i)
	}
	if d.traces.Load() != nil {
		t.Fatal("no trace attached, yet the workers still have a set")
	}
}
