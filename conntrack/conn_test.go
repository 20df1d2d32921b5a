package conntrack_test

import (
	"testing"

	"github.com/dpfw/dpfw/conntrack"
)

// TestDecisionCache: each direction caches its own decision id, up to
// MaxDecision, for one state and the generation's low bits; a new
// generation forgets both.
func TestDecisionCache(t *testing.T) {
	var c conntrack.Conn
	if _, ok := c.CachedDecision(1, conntrack.New, conntrack.Original); ok {
		t.Fatal("an empty entry has a cached decision")
	}
	c.CacheDecision(7, conntrack.New, conntrack.Original, conntrack.MaxDecision)
	c.CacheDecision(7, conntrack.Established, conntrack.Reply, 123456)
	for _, tc := range []struct {
		gen  uint32
		st   conntrack.State
		dir  conntrack.Dir
		want uint32
		ok   bool
	}{
		{7, conntrack.New, conntrack.Original, conntrack.MaxDecision, true},
		{7, conntrack.Established, conntrack.Reply, 123456, true},
		{7, conntrack.Established, conntrack.Original, 0, false},
		{7 + 1<<conntrack.DecisionGenBits, conntrack.New, conntrack.Original, conntrack.MaxDecision, true}, // same low bits: the worker's epoch check clears
		{8, conntrack.New, conntrack.Original, 0, false},
	} {
		got, ok := c.CachedDecision(tc.gen, tc.st, tc.dir)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("gen %d %v dir %d: %d %v; want %d %v", tc.gen, tc.st, tc.dir, got, ok, tc.want, tc.ok)
		}
	}
	c.CacheDecision(8, conntrack.New, conntrack.Reply, 5)
	if _, ok := c.CachedDecision(8, conntrack.New, conntrack.Original); ok {
		t.Error("a new generation kept the other direction's decision")
	}
	if d, ok := c.CachedDecision(8, conntrack.New, conntrack.Reply); !ok || d != 5 {
		t.Errorf("reply: %d %v", d, ok)
	}
	if conntrack.GenerationEpoch(255) == conntrack.GenerationEpoch(256) {
		t.Error("the epoch does not change when the cached bits wrap")
	}
}
