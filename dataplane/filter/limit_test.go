package filter_test

import (
	"strings"
	"testing"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/dpfw/dpfw/packet"
)

// compileText compiles and installs a rule set for two workers, after prev.
func compileText(t *testing.T, text string, prev *filter.Active) *filter.Active {
	t.Helper()
	rs, err := rules.ParseIptables("limits", text)
	if err != nil {
		t.Fatal(err)
	}
	f, err := filter.Compile(rs, filter.Env{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return filter.Install(f, 2, prev)
}

// on is worker w's classification context at now.
func on(a *filter.Active, w int, now int64) filter.Ctx {
	return filter.Ctx{State: a.State.Worker(w), Now: now}
}

func synFrom(src byte) *packet.Parsed {
	return &packet.Parsed{Kind: packet.IPv4, Proto: 6, TCPFlags: 0x02, Src: [16]byte{198, 18, 0, src}, Dst: [16]byte{198, 19, 0, 1}, SrcPort: 40000, DstPort: 22}
}

// A per-source SYN limit: each source gets its burst, then one SYN per
// 100 ms; other sources are unaffected; tokens refill with time.
func TestHashlimitAbovePerSource(t *testing.T) {
	f := compileText(t, `-P FORWARD ACCEPT
-A FORWARD -p tcp --syn -m hashlimit --hashlimit-above 10/sec --hashlimit-burst 3 --hashlimit-mode srcip --hashlimit-name syn -j DROP
`, nil)
	run := func(src byte, now int64) filter.Verdict {
		r := f.Run(on(f, 0, now), synFrom(src), rules.StateNew, filter.HookForward, 0, 1)
		if !r.Volatile {
			t.Fatal("a decision involving a rate limit must be marked volatile")
		}
		return r.Verdict
	}
	now := int64(1e9)
	for i := 0; i < 3; i++ {
		if v := run(1, now); v != filter.Accept {
			t.Fatalf("packet %d within the burst: %v", i, v)
		}
	}
	if v := run(1, now); v != filter.Drop {
		t.Fatalf("over the burst: %v, want DROP", v)
	}
	if v := run(2, now); v != filter.Accept {
		t.Fatalf("another source: %v, want ACCEPT", v)
	}
	if v := run(1, now+50e6); v != filter.Drop {
		t.Fatalf("50 ms later (half a token): %v, want DROP", v)
	}
	if v := run(1, now+100e6); v != filter.Accept {
		t.Fatalf("100 ms later (one token): %v, want ACCEPT", v)
	}
	// Worker 1 has its own buckets.
	if r := f.Run(on(f, 1, now), synFrom(1), rules.StateNew, filter.HookForward, 0, 1); r.Verdict != filter.Accept {
		t.Fatalf("worker 1: %v, want ACCEPT", r.Verdict)
	}
	// Packets the rule's other matches exclude take no token and are not volatile.
	ack := synFrom(1)
	ack.TCPFlags = 0x10
	if r := f.Run(on(f, 0, now), ack, rules.StateEstablished, filter.HookForward, 0, 1); r.Verdict != filter.Accept || r.Volatile {
		t.Fatalf("ACK: %+v, want ACCEPT, not volatile", r)
	}
}

// -m limit (one bucket): "upto" semantics, with a subnet mask variant.
func TestLimitUpto(t *testing.T) {
	f := compileText(t, `-P FORWARD DROP
-A FORWARD -p tcp -m limit --limit 2/s --limit-burst 2 -j ACCEPT
`, nil)
	got := ""
	for i := 0; i < 4; i++ {
		got += f.Run(on(f, 0, 5e9), synFrom(byte(i)), rules.StateNew, filter.HookForward, 0, 1).Verdict.String()[:1]
	}
	got += f.Run(on(f, 0, 5e9+5e8), synFrom(9), rules.StateNew, filter.HookForward, 0, 1).Verdict.String()[:1]
	if got != "AADDA" {
		t.Fatalf("verdicts %s, want AADDA (burst of 2, then one per 500 ms)", got)
	}
	g := compileText(t, `-P FORWARD DROP
-A FORWARD -m hashlimit --hashlimit-upto 1/min --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-srcmask 24 --hashlimit-name net -j ACCEPT
`, nil)
	if v := g.Run(on(g, 0, 1), synFrom(1), rules.StateNew, filter.HookForward, 0, 1).Verdict; v != filter.Accept {
		t.Fatal(v)
	}
	if v := g.Run(on(g, 0, 1), synFrom(200), rules.StateNew, filter.HookForward, 0, 1).Verdict; v != filter.Drop {
		t.Fatalf("same /24: %v, want DROP", v)
	}
}

// A reload keeps a named limit's buckets when its parameters are unchanged
// and starts afresh when they change.
func TestHashlimitSurvivesReload(t *testing.T) {
	text := `-A FORWARD -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-name x -j DROP
`
	f := compileText(t, text, nil)
	run := func(f *filter.Active) filter.Verdict {
		return f.Run(on(f, 0, 1e9), synFrom(1), rules.StateNew, filter.HookForward, 0, 1).Verdict
	}
	if run(f) != filter.Accept || run(f) != filter.Drop {
		t.Fatal("burst of 1 not enforced")
	}
	g := compileText(t, "-A FORWARD -p udp -j ACCEPT\n"+text, f)
	if v := run(g); v != filter.Drop {
		t.Fatalf("after reload with the same limit: %v, want DROP (bucket kept)", v)
	}
	h := compileText(t, strings.Replace(text, "1/hour", "2/hour", 1), g)
	if v := run(h); v != filter.Accept {
		t.Fatalf("after reload with a new rate: %v, want ACCEPT (new bucket)", v)
	}
}

// A table too small for the active keys reuses the fullest bucket and
// counts it; lookups never allocate.
func TestHashlimitTableBound(t *testing.T) {
	f := compileText(t, `-A FORWARD -m hashlimit --hashlimit-above 1/hour --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-htable-size 4 --hashlimit-name tiny -j DROP
`, nil)
	for i := 0; i < 64; i++ {
		f.Run(on(f, 0, 1), synFrom(byte(i)), rules.StateNew, filter.HookForward, 0, 1)
	}
	ev := f.LimitEvictions()[0]
	if ev == 0 || ev > 60 {
		t.Fatalf("evictions %d, want 60 (64 keys in 4 slots)", ev)
	}
	p := synFrom(7)
	if n := testing.AllocsPerRun(1000, func() { f.Run(on(f, 0, 2), p, rules.StateNew, filter.HookForward, 0, 1) }); n != 0 {
		t.Fatalf("%v allocs per Run with a hashlimit", n)
	}
}

func TestLimitParseErrors(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{"-A INPUT -m hashlimit --hashlimit-above 10/sec -j DROP", "needs --hashlimit-name NAME"},
		{"-A INPUT -m hashlimit --hashlimit-name x -j DROP", "needs --hashlimit-upto RATE or --hashlimit-above RATE"},
		{"-A INPUT -m hashlimit --hashlimit-above 10/fortnight --hashlimit-name x -j DROP", `l:1:41: "10/fortnight": bad rate unit "fortnight"`},
		{"-A INPUT -m hashlimit --hashlimit-above 0/s --hashlimit-name x -j DROP", "want N/second"},
		{"-A INPUT -m hashlimit --hashlimit-above 10/s --hashlimit-mode srcaddr --hashlimit-name x -j DROP", `unknown --hashlimit-mode field "srcaddr"`},
		{"-A INPUT -m hashlimit --hashlimit-above 10/s --hashlimit-burst 0 --hashlimit-name x -j DROP", "want a number 1-10000 for --hashlimit-burst"},
		{"-A INPUT -s 198.18.0.0/15 -m hashlimit --hashlimit-above 10/s --hashlimit-srcmask 64 --hashlimit-name x -j DROP", "at most 32"},
		{"-A INPUT --hashlimit-above 10/s -j DROP", `"--hashlimit-above": --hashlimit-above needs -m hashlimit before it`},
		{"-A INPUT -m limit --limit 5/s -m hashlimit --hashlimit-above 1/s --hashlimit-name x -j DROP", "one rate limit per rule"},
		{"-A INPUT -m limit ! --limit 5/s -j DROP", "cannot be negated"},
		{"-A INPUT -m connlimit --connlimit-above 3 -j DROP", "the connlimit match is not supported by dpfw; to cap new connections per source use -m hashlimit"},
		{"-A INPUT -m hashlimit --hashlimit-abve 10/s --hashlimit-name x -j DROP", "did you mean --hashlimit-above?"},
		{"-A INPUT -m hashlimit --hashlimit-above 10/s --hashlimit-h 5 --hashlimit-name x -j DROP", "ambiguous option: could be --hashlimit-htable-expire"},
	} {
		_, err := rules.ParseIptables("l", tt.line)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s\n  error %v\n  want  %q", tt.line, err, tt.want)
		}
	}
}

// Rule.String round-trips limit matches (rules import / rules list).
func TestLimitRoundTrip(t *testing.T) {
	for _, line := range []string{
		"-A INPUT -p tcp -m hashlimit --hashlimit-above 20/sec --hashlimit-burst 40 --hashlimit-mode srcip,dstport --hashlimit-srcmask 24 --hashlimit-name syn -j DROP",
		"-A INPUT -m limit --limit 3/hour --limit-burst 5 -j LOG",
		"-A INPUT -m hashlimit --hashlimit-upto 100/min --hashlimit-burst 5 --hashlimit-htable-size 1024 --hashlimit-htable-expire 10000 --hashlimit-name web -j ACCEPT",
	} {
		rs, err := rules.ParseIptables("l", line)
		if err != nil {
			t.Fatal(err)
		}
		s := rs.Chains["INPUT"].Rules[0].String()
		rs2, err := rules.ParseIptables("again", s)
		if err != nil {
			t.Fatalf("%s\n  printed as %s\n  which fails: %v", line, s, err)
		}
		if a, b := *rs.Chains["INPUT"].Rules[0].Limit, *rs2.Chains["INPUT"].Rules[0].Limit; a != b {
			t.Fatalf("%s\n  printed as %s\n  limit %+v != %+v", line, s, a, b)
		}
	}
}
