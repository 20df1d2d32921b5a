package ring

import (
	"sync"
	"testing"
)

// Every record put is drained once and in order, or counted lost; a full
// ring never blocks the producer; Put never allocates.
func TestRing(t *testing.T) {
	r := New[int](5)
	if r.Len() != 8 || r.On() {
		t.Fatalf("a ring of 5 holds %d (want 8), on %v (want off)", r.Len(), r.On())
	}
	for i := 0; i < 10; i++ {
		r.Put(&i)
	}
	var got []int
	r.Drain(func(v *int) { got = append(got, *v) })
	if len(got) != 8 || got[0] != 0 || got[7] != 7 || r.Lost() != 2 {
		t.Fatalf("drained %v, lost %d; want 0..7 and 2 lost", got, r.Lost())
	}
	r.Listen(true)
	r.Listen(true)
	r.Listen(false)
	if !r.On() {
		t.Fatal("off with a listener left")
	}
	v := 1
	if n := testing.AllocsPerRun(100, func() { r.Put(&v); r.Drain(func(*int) {}) }); n != 0 {
		t.Fatalf("Put and Drain allocate %v", n)
	}
}

// Under the race detector: a producer and a draining consumer; the
// consumer sees every record once, in order, or it was counted lost.
func TestRingConcurrent(t *testing.T) {
	r := New[uint64](64)
	const n = 200000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= n; i++ {
			r.Put(&i)
		}
	}()
	var last, seen uint64
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	check := func(v *uint64) {
		if *v <= last {
			t.Errorf("record %d after %d", *v, last)
		}
		last = *v
		seen++
	}
	for {
		select {
		case <-done:
			r.Drain(check)
			if seen+r.Lost() != n {
				t.Fatalf("%d seen + %d lost != %d put", seen, r.Lost(), n)
			}
			return
		default:
			r.Drain(check)
		}
	}
}
