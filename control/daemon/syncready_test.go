package daemon

import (
	"testing"
	"time"
)

// TestReadiness: ready once the peer has answered the resync and the
// external cache has not grown for readySettle; a cache still filling
// (a dump in progress) or a silent peer waits, up to the timeout.
func TestReadiness(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	const timeout = 10 * time.Second
	type sample struct {
		at, size int
		seen     int // the peer's last message, ms (-1: before the request)
		want     bool
	}
	for _, tc := range []struct {
		name    string
		samples []sample
	}{
		{"empty table: heartbeats alone answer", []sample{{100, 0, 50, false}, {500, 0, 450, false}, {599, 0, 550, false}, {600, 0, 590, true}}},
		{"a dump fills the cache, then settles", []sample{{100, 1000, 90, false}, {200, 5000, 190, false}, {300, 9000, 290, false},
			{400, 9010, 390, false}, {700, 9020, 690, false}, {799, 9020, 790, false}, {800, 9021, 795, true}}},
		{"silent peer: ready at the timeout", []sample{{500, 0, -1, false}, {9999, 0, -1, false}, {10000, 0, -1, true}}},
		{"a dump longer than the timeout", []sample{{100, 1000, 90, false}, {5000, 500000, 4990, false}, {10000, 1000000, 9990, true}}},
	} {
		r := readiness{asked: t0}
		for _, s := range tc.samples {
			seen := time.Time{}
			if s.seen >= 0 {
				seen = ms(s.seen)
			}
			if got := r.check(ms(s.at), seen, s.size, timeout) != ""; got != s.want {
				t.Errorf("%s: at %d ms (cache %d): ready %v; want %v", tc.name, s.at, s.size, got, s.want)
				break
			}
		}
	}
}
