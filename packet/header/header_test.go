package header

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// refSum is RFC 1071's sum of b plus acc, 16 bits at a time in network byte
// order, with an odd last byte padded with a zero, folded one carry at a time.
func refSum(b []byte, acc uint64) uint16 {
	s := acc
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// checkSums compares SumWords (whose folded result is byte-swapped; acc
// goes in swapped) and Checksum (with acc and with a wider initial sum)
// with the reference for b and a 16-bit acc.
func checkSums(t *testing.T, b []byte, acc uint16) {
	t.Helper()
	want := refSum(b, uint64(acc))
	if got := Checksum(b, uint32(acc)); got != ^want {
		t.Fatalf("length %d acc %#x: Checksum = %#04x; reference %#04x", len(b), acc, got, ^want)
	}
	if wide := uint32(acc) + uint32(len(b))<<16; Checksum(b, wide) != ^refSum(b, uint64(wide)) {
		t.Fatalf("length %d initial %#x: Checksum = %#04x; reference %#04x", len(b), wide, Checksum(b, wide), ^refSum(b, uint64(wide)))
	}
	if got := bits.ReverseBytes16(Fold(SumWords(b, uint64(bits.ReverseBytes16(acc))))); got != want {
		t.Fatalf("length %d acc %#x: Fold(SumWords), swapped = %#04x; reference %#04x", len(b), acc, got, want)
	}
	if got := Verifies(SumWords(b, uint64(bits.ReverseBytes16(acc)))); got != (want == 0xffff) {
		t.Fatalf("length %d acc %#x: Verifies(SumWords) = %v; reference folds to %#04x", len(b), acc, got, want)
	}
}

// TestSumMatchesReference: SumWords and Checksum agree with RFC 1071
// for every length 0…300 and random ones up to 9000, at every alignment,
// with and without an initial accumulator, on random bytes and on runs of
// 0xff that carry at every step.
func TestSumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	buf := make([]byte, 9008)
	for n := 0; n < 20000; n++ {
		l := n % 301
		if n >= 3010 {
			l = r.IntN(9000)
		}
		off := r.IntN(8)
		b := buf[off : off+l]
		fill := r.IntN(4)
		for i := range b {
			switch fill {
			case 0:
				b[i] = 0xff
			case 1:
				b[i] = 0
			default:
				b[i] = byte(r.Uint32())
			}
		}
		acc := uint16(0)
		if r.IntN(2) == 0 {
			acc = uint16(r.Uint32())
		}
		checkSums(t, b, acc)
	}
	// Fold and Verifies on their own: any 64-bit accumulator, against one
	// carry at a time.
	edges := []uint64{0, 0xffff, 0x10000, 0x1ffff, ^uint64(0), 0xffffffff_00010000, 0xffffffff_ffff0000}
	for n := 0; n < 100000; n++ {
		x := r.Uint64() >> r.IntN(64)
		if n < len(edges) {
			x = edges[n] // 0xffffffff_00010000 needs all four folds
		}
		want := x
		for want>>16 != 0 {
			want = want&0xffff + want>>16
		}
		if got := Fold(x); uint64(got) != want {
			t.Fatalf("Fold(%#x) = %#x; want %#x", x, got, want)
		}
		if got := Verifies(x); got != (want == 0xffff) {
			t.Fatalf("Verifies(%#x) = %v; folds to %#x", x, got, want)
		}
		// Multiples of 0xffff and their neighbours, where Verifies
		// changes its answer.
		m := uint64(r.Uint32()) * 0xffff
		for _, y := range []uint64{m, m + 1, m - 1, m + 0xffff} {
			if got, want := Verifies(y), y != 0 && Fold(y) == 0xffff; got != want {
				t.Fatalf("Verifies(%#x) = %v; Fold gives %#x", y, got, Fold(y))
			}
		}
	}
}

func FuzzSum(f *testing.F) {
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, acc uint32) {
		checkSums(t, b, uint16(acc))
	})
}

// BenchmarkSumWords: the L4 sum of a 64-byte UDP frame (26 bytes), of a
// 64-byte TCP frame's segment, and of a full-size TCP segment.
func BenchmarkSumWords(b *testing.B) {
	buf := make([]byte, 1480)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for _, n := range []int{26, 40, 1480} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			var acc uint64
			for b.Loop() {
				acc = SumWords(buf[:n], acc)
			}
			sink = acc
		})
	}
}

var sink uint64
