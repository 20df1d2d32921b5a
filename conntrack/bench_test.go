package conntrack

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func benchKeys(n int) []Tuple {
	r := rand.New(rand.NewPCG(3, 4))
	keys := make([]Tuple, n)
	for i := range keys {
		k := Tuple{Proto: 17, Family: 4, SrcPort: uint16(r.Uint32()), DstPort: 53}
		*(*uint64)(unsafe.Pointer(&k.Src[0])) = r.Uint64() & 0xffffffff
		*(*uint64)(unsafe.Pointer(&k.Dst[0])) = r.Uint64() & 0xffffffff
		keys[i] = k
	}
	return keys
}

// BenchmarkLookup compares the table, looked up one key at a time and in
// 32-key bursts (PrefetchBurst then LookupHint, as the data plane does), with a Go map holding
// the same keys. The keys are visited in a random order that is laid out
// sequentially in memory, as packets of many flows arrive: the key itself is
// in cache, its table entry is not.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 20} {
		keys := benchKeys(n)
		tb := NewTable(n+n/8, 77)
		m := make(map[Tuple]uint32, n)
		for i := range keys {
			idx, err := tb.Insert(&keys[i])
			if err != nil {
				b.Fatal(err)
			}
			m[keys[i]] = idx
		}
		shuffled := make([]Tuple, n)
		for i, j := range rand.New(rand.NewPCG(5, 6)).Perm(n) {
			shuffled[i] = keys[j]
		}
		b.Run(fmt.Sprintf("table_burst/%d", n), func(b *testing.B) {
			// As the pipeline does: hash a burst, touch its buckets and
			// entries (PrefetchBurst), then look each key up.
			var keys [32]Tuple
			var hashes [32]uint64
			var hints [32]uint32
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				for j := range keys {
					keys[j] = shuffled[(i+j)%n]
					hashes[j] = tb.Hash(&keys[j])
				}
				tb.PrefetchBurst(keys[:], hashes[:], hints[:])
				for j := range keys {
					if _, _, ok := tb.LookupHint(&keys[j], hashes[j], hints[j]); !ok {
						b.Fatal("miss")
					}
				}
				i += 32
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/lookup")
		})
		b.Run(fmt.Sprintf("table/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, _, ok := tb.Lookup(&shuffled[i%n]); !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(fmt.Sprintf("gomap/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, ok := m[shuffled[i%n]]; !ok {
					b.Fatal("miss")
				}
				i++
			}
		})
	}
}

// BenchmarkInsert fills a table to 90% of its capacity, deleting and
// refilling, so each insert is measured at high load.
func BenchmarkInsert(b *testing.B) {
	const n = 1 << 20
	keys := benchKeys(n)
	tb := NewTable(n, 9)
	fill := n * 9 / 10
	idx := make([]uint32, fill)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := i % fill
		if i >= fill {
			tb.Delete(idx[j])
		}
		var err error
		if idx[j], err = tb.Insert(&keys[j]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(tb.Stats.InsertFailures), "failures")
}
