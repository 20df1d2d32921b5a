package filter_test

import (
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// A traced classification records every rule that matched, in order
// (LOG, the jump, the user chain's rules, its RETURN), and the policy
// that decided; an untraced one records nothing and allocates nothing.
func TestPath(t *testing.T) {
	rs, err := rules.ParseIptables("t", `-P FORWARD DROP
-N web
-A FORWARD -p tcp -j LOG --log-prefix "all: "
-A FORWARD -p udp -j ACCEPT
-A FORWARD -p tcp -j web
-A FORWARD -p tcp --dport 80 -j ACCEPT
-A web -p tcp --dport 22 -j DROP
-A web -p tcp -j RETURN
`)
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Compile(rs, filter.Env{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		dport uint16
		want  string
		v     filter.Verdict
	}{
		{80, "FORWARD#1 FORWARD#3 web#2 FORWARD#4", filter.Accept},
		{22, "FORWARD#1 FORWARD#3 web#1", filter.Drop},
		{25, "FORWARD#1 FORWARD#3 web#2 FORWARD policy", filter.Drop},
	} {
		p := &packet.Parsed{Kind: packet.IPv4, Proto: 6, TCPFlags: 0x02, DstPort: tt.dport}
		var path filter.Path
		r := f.Run(filter.Ctx{Path: &path}, p, rules.StateNew, filter.HookForward, 0, 1)
		var got []string
		for _, step := range path.Steps[:path.N] {
			got = append(got, f.DecisionName(f.StepDecision(step)))
		}
		if r.Verdict != tt.v || strings.Join(got, " ") != tt.want {
			t.Errorf("dport %d: %v via %q; want %v via %q", tt.dport, r.Verdict, strings.Join(got, " "), tt.v, tt.want)
		}
	}
	p := &packet.Parsed{Kind: packet.IPv4, Proto: 6, DstPort: 80}
	if n := testing.AllocsPerRun(1000, func() { f.Run(filter.Ctx{}, p, rules.StateNew, filter.HookForward, 0, 1) }); n != 0 {
		t.Fatalf("Run allocates %v", n)
	}
}
