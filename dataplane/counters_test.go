package dataplane_test

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/dpfw/dpfw/dataplane"
)

// TestSnapshotWords: the snapshots are published word by word, so every
// field must be a 64-bit integer (or an array or struct of them) and the
// words must cover the struct exactly.
func TestSnapshotWords(t *testing.T) {
	for _, tt := range []struct {
		v     any
		words int
	}{{dataplane.Snapshot{}, dataplane.SnapshotWords}, {dataplane.CTSnapshot{}, dataplane.CTWords}} {
		tp := reflect.TypeOf(tt.v)
		if n := countWords(t, tp, tp.Name()); n != tt.words || int(tp.Size()) != 8*n {
			t.Errorf("%s: %d words of fields, %d bytes, %d words published", tp, n, tp.Size(), tt.words)
		}
	}
}

func countWords(t *testing.T, tp reflect.Type, path string) int {
	switch tp.Kind() {
	case reflect.Uint64, reflect.Int64:
		return 1
	case reflect.Int, reflect.Uint:
		if unsafe.Sizeof(int(0)) == 8 {
			return 1
		}
	case reflect.Array:
		return tp.Len() * countWords(t, tp.Elem(), path+"[]")
	case reflect.Struct:
		n := 0
		for i := 0; i < tp.NumField(); i++ {
			n += countWords(t, tp.Field(i).Type, path+"."+tp.Field(i).Name)
		}
		return n
	}
	t.Errorf("%s is %v: a snapshot field must be a 64-bit integer", path, tp)
	return 0
}

// Publish and Snapshot carry every word; Add sums them.
func TestCountersRoundTrip(t *testing.T) {
	var s dataplane.Snapshot
	s.RxPackets, s.FragmentsHeld, s.Drops[len(s.Drops)-1] = 3, 5, 7
	var c dataplane.Counters
	c.Publish(&s)
	if got := c.Snapshot(); got != s {
		t.Fatalf("published %+v, read %+v", s, got)
	}
	s.Add(&s)
	if s.RxPackets != 6 || s.Drops[len(s.Drops)-1] != 14 {
		t.Fatalf("Add: %+v", s)
	}
}

// BusyRound puts each round in its power-of-two bucket and adds it to
// BusyNanos, the histogram's sum.
func TestBusyRounds(t *testing.T) {
	var s dataplane.Snapshot
	for _, d := range []int64{100, 255, 256, 300, 1000, 4 << 20, 1e9} {
		s.BusyRound(d)
	}
	want := map[int]uint64{0: 2, 1: 2, 2: 1, 15: 2}
	for i, n := range s.BusyRounds {
		if n != want[i] {
			t.Errorf("bucket %d (< %d ns): %d; want %d", i, dataplane.RoundBucketBound(i), n, want[i])
		}
	}
	if s.BusyNanos != 100+255+256+300+1000+4<<20+1e9 {
		t.Errorf("BusyNanos %d", s.BusyNanos)
	}
}
