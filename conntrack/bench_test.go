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
// 32-key bursts (the prefetch steps, then lookupHint, as the data plane
// does), with a Go map holding the same keys. The keys are visited in a random order that is laid out
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
			// As the pipeline does: start loading the buckets as the
			// keys are hashed, a group at a time, then the entries,
			// then look the keys up.
			var keys [32]Tuple
			var hashes [32]uint64
			var hints [32]uint32
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				for g := 0; g < len(keys); g += PrefetchGroup {
					for j := g; j < g+PrefetchGroup; j++ {
						keys[j] = shuffled[(i+j)%n]
						hashes[j] = tb.Hash(&keys[j])
					}
					tb.prefetchBuckets(hashes[g : g+PrefetchGroup])
				}
				second := false
				for g := 0; g < len(keys); g += PrefetchGroup {
					second = tb.prefetchEntries(keys[g:g+PrefetchGroup], hashes[g:g+PrefetchGroup], hints[g:g+PrefetchGroup]) || second
				}
				if second {
					tb.prefetchSecond(keys[:], hashes[:], hints[:])
				}
				for j := range keys {
					if _, _, ok := tb.lookupHint(&keys[j], hashes[j], hints[j]); !ok {
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

// BenchmarkFill inserts connections into an empty table of 1 M entries up
// to 90% of its capacity, one at a time and in 32-key bursts prefetched as
// the data plane does (prefetchBurst: for a key that is not in the table it
// also fetches the reply key's bucket and the first free entry). ns/insert
// is the cost of one new connection (both of its keys); compare it with
// BenchmarkLookup's.
func BenchmarkFill(b *testing.B) {
	const capacity = 1 << 20
	fill := capacity * 9 / 10
	keys := benchKeys(fill)
	for _, burst := range []bool{false, true} {
		name := "one"
		if burst {
			name = "burst"
		}
		b.Run(name, func(b *testing.B) {
			var hashes [32]uint64
			var hints [32]uint32
			failures := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				tb := NewTable(capacity, 9)
				for i := range tb.conns { // fault the pages in, as a running table has them
					tb.conns[i].expires = 0
				}
				b.StartTimer()
				for i := 0; i < fill; i += 32 {
					chunk := keys[i:min(i+32, fill)]
					if burst {
						for j := range chunk {
							hashes[j] = tb.Hash(&chunk[j])
						}
						tb.prefetchBurst(chunk, hashes[:len(chunk)], hints[:len(chunk)])
						for j := range chunk {
							if _, err := tb.InsertHash(&chunk[j], hashes[j]); err != nil {
								b.Fatal(err)
							}
						}
					} else {
						for j := range chunk {
							if _, err := tb.Insert(&chunk[j]); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				b.StopTimer()
				failures += tb.Stats.InsertFailures
				tb.Free()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*fill), "ns/insert")
			b.ReportMetric(float64(failures), "failures")
		})
	}
}
