package filter

import (
	"testing"

	"github.com/dpfw/dpfw/dataplane/rules"
)

// TestConstants: the states a chain decides without looking at the packet.
func TestConstants(t *testing.T) {
	rs, err := rules.ParseIptables("c", `-P INPUT DROP
-A INPUT -m state --state NEW -p tcp --dport 22 -j ACCEPT
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p icmp -j ACCEPT
-A OUTPUT -p tcp -j LOG
-A OUTPUT -m state --state ESTABLISHED -j ACCEPT
-A FORWARD -6 -j DROP
`)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Compile(rs, Env{Ports: map[string]uint16{}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	fwd := f.hooks[0][HookForward]
	for _, tc := range []struct {
		name string
		got  int32
		want int32
	}{
		{"INPUT ESTABLISHED: its rule", f.consts[0][HookInput][2], 2},
		{"INPUT RELATED: the same rule", f.consts[0][HookInput][3], 2},
		{"INPUT NEW: a port rule first", f.consts[0][HookInput][1], 0},
		{"INPUT INVALID: the ICMP rule may match", f.consts[0][HookInput][0], 0},
		{"OUTPUT ESTABLISHED: a LOG rule first", f.consts[0][HookOutput][2], 0},
		{"FORWARD IPv4: no rule of the family, the policy", f.consts[0][HookForward][1], ^fwd},
		{"FORWARD IPv6: the -6 DROP rule (id 3: chains in INPUT, FORWARD, OUTPUT order)", f.consts[1][HookForward][1], 4},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %d; want %d", tc.name, tc.got, tc.want)
		}
	}
}
