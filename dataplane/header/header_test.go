package header

import (
	"math/rand/v2"
	"testing"
)

// refSum is RFC 1071's sum, 16 bits at a time in network byte order, with
// an odd last byte padded with a zero.
func refSum(b []byte) uint64 {
	var s uint64
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	return s
}

// TestSumMatchesReference: the word-at-a-time sum folds to RFC 1071's value
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
		acc := uint64(0)
		if r.IntN(2) == 0 {
			acc = r.Uint64() >> 20
		}
		want := Fold(refSum(b) + acc)
		if got := Fold(Sum(b, acc)); got != want {
			t.Fatalf("length %d offset %d acc %#x: Fold(Sum) = %#04x; reference %#04x", l, off, acc, got, want)
		}
	}
}

func FuzzSum(f *testing.F) {
	f.Add([]byte{0xff, 0xff, 0xff}, uint32(1))
	f.Fuzz(func(t *testing.T, b []byte, acc uint32) {
		want := Fold(refSum(b) + uint64(acc))
		if got := Fold(Sum(b, uint64(acc))); got != want {
			t.Fatalf("Fold(Sum(%x, %d)) = %#04x; reference %#04x", b, acc, got, want)
		}
	})
}
