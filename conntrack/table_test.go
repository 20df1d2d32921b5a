package conntrack

import (
	"math/bits"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/dpfw/dpfw/conntrack/tcpstate"
)

// Size assertions: flat, fixed-size keys and entries.
var (
	_ [tupleSize]byte = [unsafe.Sizeof(Tuple{})]byte{}
	_ [connSize]byte  = [unsafe.Sizeof(Conn{})]byte{}
	_ [64]byte        = [unsafe.Sizeof(bucket{})]byte{}
	_ [winSize]byte   = [unsafe.Sizeof(tcpstate.Windows{})]byte{}
)

func randTuple(r *rand.Rand) Tuple {
	t := Tuple{Proto: 6, Family: 4, Zone: uint16(r.IntN(2))}
	// A small address space so that collisions on all but one field occur.
	t.Src[0], t.Src[1], t.Src[2], t.Src[3] = 198, 18, byte(r.IntN(4)), byte(r.IntN(256))
	t.Dst[0], t.Dst[1], t.Dst[2], t.Dst[3] = 198, 19, byte(r.IntN(4)), byte(r.IntN(256))
	t.SrcPort, t.DstPort = uint16(r.IntN(1024)), uint16(r.IntN(4))
	if r.IntN(4) == 0 {
		t.Family = 6
		t.Src[15], t.Dst[15] = 1, 2
	}
	return t
}

// TestTableDifferential runs random insert/lookup/delete operations against
// the table and a plain map holding the same connections (both directions),
// with a fixed seed, and compares every answer.
func TestTableDifferential(t *testing.T) {
	ops := 2_000_000
	if testing.Short() {
		ops = 200_000
	}
	r := rand.New(rand.NewPCG(42, 7))
	const capacity = 20_000
	tb := NewTable(capacity, 0xdecafbad)
	type ref struct {
		idx uint32
		dir Dir
	}
	want := map[Tuple]ref{}
	byIdx := map[uint32]Tuple{}
	var live []uint32
	for op := 0; op < ops; op++ {
		k := randTuple(r)
		switch x := r.IntN(10); {
		case x < 4: // insert if absent
			if _, ok := want[k]; ok {
				continue
			}
			if _, ok := want[k.Reverse()]; ok {
				continue
			}
			if k == k.Reverse() {
				continue
			}
			idx, err := tb.Insert(&k)
			if err == ErrTableFull {
				if len(byIdx) != capacity {
					t.Fatalf("op %d: table full with %d entries; capacity %d", op, len(byIdx), capacity)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d: insert failed at %d/%d entries: %v", op, len(byIdx), capacity, err)
			}
			want[k] = ref{idx, Original}
			want[k.Reverse()] = ref{idx, Reply}
			byIdx[idx] = k
			live = append(live, idx)
		case x < 8: // lookup: plain, with prefetchBurst's hint, or with a stale or random hint
			var idx uint32
			var dir Dir
			var ok bool
			switch r.IntN(3) {
			case 0:
				idx, dir, ok = tb.Lookup(&k)
			case 1:
				var hint [1]uint32
				h := tb.Hash(&k)
				tb.prefetchBurst([]Tuple{k}, []uint64{h}, hint[:])
				idx, dir, ok = tb.lookupHint(&k, h, hint[0])
			default:
				idx, dir, ok = tb.lookupHint(&k, tb.Hash(&k), uint32(r.IntN(2*capacity+1)))
			}
			w, wok := want[k]
			if ok != wok || (ok && (idx != w.idx || dir != w.dir)) {
				t.Fatalf("op %d: Lookup(%v) = %d,%v,%v; want %d,%v,%v", op, k, idx, dir, ok, w.idx, w.dir, wok)
			}
		default: // delete a live entry
			if len(live) == 0 {
				continue
			}
			j := r.IntN(len(live))
			idx := live[j]
			live[j] = live[len(live)-1]
			live = live[:len(live)-1]
			k := byIdx[idx]
			tb.Delete(idx)
			delete(want, k)
			delete(want, k.Reverse())
			delete(byIdx, idx)
		}
		if tb.Len() != len(byIdx) {
			t.Fatalf("op %d: Len %d; want %d", op, tb.Len(), len(byIdx))
		}
	}
	// Every key still present must be found.
	for k, w := range want {
		idx, dir, ok := tb.Lookup(&k)
		if !ok || idx != w.idx || dir != w.dir {
			t.Fatalf("final: Lookup(%v) = %d,%v,%v; want %d,%v", k, idx, dir, ok, w.idx, w.dir)
		}
	}
	t.Logf("%d ops, %d live, %d kicks, %d insert failures", ops, tb.Len(), tb.Stats.Kicks, tb.Stats.InsertFailures)
}

// TestTableFillsTo90Percent: inserting up to 90% of capacity never fails.
func TestTableFillsTo90Percent(t *testing.T) {
	const capacity = 100_000
	tb := NewTable(capacity, 12345)
	r := rand.New(rand.NewPCG(1, 1))
	n := 0
	for n < capacity*9/10 {
		k := Tuple{Proto: 17, Family: 4, SrcPort: uint16(r.Uint32()), DstPort: 53}
		*(*uint64)(unsafe.Pointer(&k.Src[0])) = r.Uint64()
		if _, _, ok := tb.Lookup(&k); ok {
			continue
		}
		if _, err := tb.Insert(&k); err != nil {
			t.Fatalf("insert %d of %d failed: %v", n, capacity, err)
		}
		n++
	}
	if tb.Stats.InsertFailures != 0 {
		t.Errorf("insert failures below 90%% load: %d", tb.Stats.InsertFailures)
	}
	// Keep going to full capacity: report where the first failure happens.
	for n < capacity {
		k := Tuple{Proto: 17, Family: 4, SrcPort: uint16(r.Uint32()), DstPort: 53}
		*(*uint64)(unsafe.Pointer(&k.Src[0])) = r.Uint64()
		if _, err := tb.Insert(&k); err != nil {
			break
		}
		n++
	}
	t.Logf("filled %d of %d entries (%.2f%%) before the first insert failure", n, capacity, 100*float64(n)/capacity)
	if n < capacity*97/100 {
		t.Errorf("the table filled only %d of %d entries; want at least 97%%", n, capacity)
	}
	perConn := float64(tb.MemoryBytes()) / capacity
	t.Logf("memory: %.1f bytes per connection (entries %d B + bucket slots)", perConn, connSize)
	if perConn > 128 {
		t.Errorf("memory per connection %.1f B; want ≤ 128", perConn)
	}
}

func TestTableNoAllocs(t *testing.T) {
	tb := NewTable(1000, 1)
	k := Tuple{Proto: 6, Family: 4, SrcPort: 1, DstPort: 2}
	idx, _ := tb.Insert(&k)
	if n := testing.AllocsPerRun(1000, func() { tb.Lookup(&k) }); n != 0 {
		t.Errorf("Lookup allocates %v; want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() {
		tb.Delete(idx)
		idx, _ = tb.Insert(&k)
	}); n != 0 {
		t.Errorf("Insert+Delete allocates %v; want 0", n)
	}
}

func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, ops []byte) {
		tb := NewTable(64, 99)
		want := map[Tuple]uint32{}
		for i := 0; i+2 < len(ops); i += 3 {
			k := Tuple{Proto: 6, Family: 4, SrcPort: uint16(ops[i+1] % 16), DstPort: uint16(ops[i+2]%16) + 100}
			switch ops[i] % 3 {
			case 0:
				if _, ok := want[k]; ok {
					continue
				}
				if _, ok := want[k.Reverse()]; ok {
					continue
				}
				if idx, err := tb.Insert(&k); err == nil {
					want[k] = idx
				}
			case 1:
				if idx, ok := want[k]; ok {
					tb.Delete(idx)
					delete(want, k)
				}
			case 2:
				idx, dir, ok := tb.Lookup(&k)
				w, wok := want[k]
				if ok != wok || (ok && (idx != w || dir != Original)) {
					t.Fatalf("Lookup(%v) = %d %v %v; want %d %v", k, idx, dir, ok, w, wok)
				}
			}
		}
	})
}

// TestMatchTags: matchTags and firstMatch against a loop over the slots,
// with tags from a small range (0 included) so that many lanes match.
func TestMatchTags(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 100000; i++ {
		var b bucket
		for s := range b.tag {
			b.tag[s] = uint16(r.IntN(4))
		}
		tag := uint16(r.IntN(4))
		var want uint32
		for s := range b.tag {
			if b.tag[s] == tag {
				want |= 1 << s
			}
		}
		if got := matchTags(&b, tag); got != want {
			t.Fatalf("matchTags(%v, %d) = %010b; want %010b", b.tag, tag, got, want)
		}
		first := -1
		if want != 0 {
			first = bits.TrailingZeros32(want)
		}
		if got := firstMatch(&b, tag); got != first {
			t.Fatalf("firstMatch(%v, %d) = %d; want %d", b.tag, tag, got, first)
		}
	}
}
