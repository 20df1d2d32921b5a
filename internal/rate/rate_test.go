package rate

import "testing"

// TestBucket: a full start, the rate, the burst cap, a clock going back,
// and the zero bucket.
func TestBucket(t *testing.T) {
	b := PerSecond(10, 3)
	n := 0
	for b.Allow(5e9) {
		n++
	}
	if n != 3 {
		t.Errorf("a new bucket of burst 3 allowed %d at once; want 3", n)
	}
	if b.Allow(5e9 + 50e6) {
		t.Errorf("allowed after 50 ms at 10/s")
	}
	if !b.Allow(5e9 + 100e6) {
		t.Errorf("refused after 100 ms at 10/s")
	}
	if b.Allow(4e9) {
		t.Errorf("a clock going back refilled the bucket")
	}
	n = 0
	for i := int64(0); i < 100; i++ {
		if b.Allow(10e9 + i*1e6) {
			n++
		}
	}
	if n > 3+1 {
		t.Errorf("after an idle gap, %d allowed in 100 ms; want at most the burst plus one", n)
	}
	var z Bucket
	off := PerSecond(0, 5)
	if z.Enabled() || z.Allow(1e9) || off.Allow(1e9) {
		t.Errorf("the zero bucket allowed an event")
	}
	if testing.AllocsPerRun(100, func() { b.Allow(20e9) }) != 0 {
		t.Errorf("Allow allocates")
	}
}
