package metrics

import "testing"

// TestBoundRules: past the bound, policies come first, then the rules
// that counted packets, in order; the rest are counted as omitted.
func TestBoundRules(t *testing.T) {
	var rs []RuleStat
	for i := 0; i < 100; i++ {
		rs = append(rs, RuleStat{Chain: "INPUT", Rule: itoa(i + 1), Packets: uint64(i % 3)})
	}
	rs = append(rs, RuleStat{Chain: "INPUT", Rule: "policy"}, RuleStat{Chain: "FORWARD", Rule: "policy"})
	if got, n := boundRules(rs, 0); len(got) != len(rs) || n != 0 {
		t.Errorf("no bound: %d kept, %d omitted", len(got), n)
	}
	got, n := boundRules(rs, 10)
	if len(got) != 10 || n != len(rs)-10 {
		t.Fatalf("%d kept, %d omitted", len(got), n)
	}
	if got[0].Rule != "policy" || got[1].Rule != "policy" || got[2].Rule != "2" || got[3].Rule != "3" || got[4].Rule != "5" {
		t.Errorf("kept %v", got[:5])
	}
	for _, r := range got[2:] {
		if r.Packets == 0 {
			t.Errorf("kept rule %s that counted nothing", r.Rule)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
