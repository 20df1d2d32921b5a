package dataplane_test

import (
	"testing"
	"time"

	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// A listing hands entries over a chunk at a time and resumes where
// it stopped; on a busy worker it takes at most one step per 100 µs of the
// worker's clock, on an idle one a large step per poll round.
func TestControlListingChunkedAndPaced(t *testing.T) {
	pl := newPipeline(t, false, tutorialRules)
	const flows = 300
	var b dataplane.Burst
	now := int64(time.Second)
	for i := 0; i < flows; i++ {
		fillBurst(&b, [][]byte{pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, pcapgen.ClientIP(i), pcapgen.ServerIP(1), 5000, 9, 4)})
		pl.Process(&b, 0, now)
	}
	if n := pl.Tracker.Table.Len(); n != flows {
		t.Fatalf("%d connections tracked; want %d", n, flows)
	}
	req := dataplane.NewRequest(false, nil, 64)
	seen := map[uint32]bool{}
	chunks, bursts := 0, 0
	for {
		if !pl.Post(req) {
			t.Fatal("mailbox busy")
		}
		for done := false; !done; {
			// Busy bursts 10 µs apart: one step (64 slots) every 10 bursts.
			now += 10e3
			bursts++
			b.N = 0
			pl.Process(&b, 0, now)
			select {
			case <-req.Done():
				done = true
			default:
			}
			if bursts > 100000 {
				t.Fatal("listing never finished")
			}
		}
		chunks++
		for _, e := range req.Entries {
			if seen[e.ID] {
				t.Fatalf("entry %d listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		if !req.More {
			break
		}
		req.Next()
	}
	if len(seen) != flows || chunks < flows/64 {
		t.Fatalf("listed %d entries in %d chunks; want %d in at least %d", len(seen), chunks, flows, flows/64)
	}
	// 4096 slots, 64 per step, a step per 100 µs: about 640 bursts of 10 µs.
	if slots := pl.Tracker.Table.Cap(); bursts < slots/64*10*9/10 {
		t.Errorf("%d busy bursts served %d slots: pacing not applied", bursts, slots)
	}
	// Idle: the whole table in one poll round.
	req = dataplane.NewRequest(false, nil, flows)
	pl.Post(req)
	pl.Idle(now + 1e6)
	select {
	case <-req.Done():
	default:
		t.Fatal("an idle worker did not finish a 4096-slot listing in one round")
	}
	if len(req.Entries) != flows {
		t.Fatalf("idle listing: %d entries; want %d", len(req.Entries), flows)
	}
}
