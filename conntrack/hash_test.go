package conntrack

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/dpfw/dpfw/packet"
)

// refHash is the obviously correct form of hashTuple: xxhash.Sum64 of the
// seed followed by the tuple's meaningful bytes (for IPv4: the two 4-byte
// addresses, then ports, protocol, family and zone).
func refHash(seed uint64, t *Tuple) uint64 {
	b := binary.LittleEndian.AppendUint64(nil, seed)
	if t.Family == 4 {
		b = append(b, t.Src[:4]...)
		b = append(b, t.Dst[:4]...)
	} else {
		b = append(b, t.Src[:]...)
		b = append(b, t.Dst[:]...)
	}
	b = binary.LittleEndian.AppendUint16(b, t.SrcPort)
	b = binary.LittleEndian.AppendUint16(b, t.DstPort)
	b = append(b, t.Proto, t.Family)
	b = binary.LittleEndian.AppendUint16(b, t.Zone)
	return xxhash.Sum64(b)
}

// TestHashMatchesXXHash: the inlined xxh64 of IPv4 tuples and the library
// path of IPv6 ones give exactly the library's xxhash of the same bytes.
func TestHashMatchesXXHash(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for i := 0; i < 200000; i++ {
		k := randTuple(r)
		k.Src[3], k.Dst[2] = byte(r.Uint32()), byte(r.Uint32())
		k.SrcPort, k.Proto, k.Zone = uint16(r.Uint32()), uint8(r.Uint32()), uint16(r.Uint32())
		seed := r.Uint64()
		if got, want := hashTuple(seed, &k), refHash(seed, &k); got != want {
			t.Fatalf("hashTuple(%#x, %+v) = %#x; xxhash.Sum64 = %#x", seed, k, got, want)
		}
	}
}

// TestKeyOfMatchesTupleOf: keyOf stores TupleOf's tuple and returns its
// hash, for every protocol (with and without ports, stray port values in
// the decoded packet included) and both families.
func TestKeyOfMatchesTupleOf(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	tb := NewTable(16, r.Uint64())
	protos := []uint8{1, 6, 17, 47, 50, 58, 132, 255}
	for i := 0; i < 100000; i++ {
		p := packet.Parsed{Kind: packet.IPv4, Proto: protos[r.IntN(len(protos))],
			SrcPort: uint16(r.Uint32()), DstPort: uint16(r.Uint32())}
		if r.IntN(3) == 0 {
			p.Kind = packet.IPv6
			for j := range p.Src {
				p.Src[j], p.Dst[j] = byte(r.Uint32()), byte(r.Uint32())
			}
		} else {
			binary.LittleEndian.PutUint32(p.Src[:], r.Uint32())
			binary.LittleEndian.PutUint32(p.Dst[:], r.Uint32())
		}
		zone := uint16(r.Uint32())
		k := Tuple{Src: [16]byte{0xff}, Zone: 0xffff} // garbage keyOf must overwrite
		h := tb.keyOf(&p, zone, &k)
		want := TupleOf(&p, zone)
		if k != want {
			t.Fatalf("keyOf(%+v) stored %+v; TupleOf = %+v", p, k, want)
		}
		if hw := tb.Hash(&want); h != hw {
			t.Fatalf("keyOf(%+v) hash %#x; Hash = %#x", p, h, hw)
		}
		rev := want.Reverse()
		if got, hw := tb.reverseHash(&want), tb.Hash(&rev); got != hw {
			t.Fatalf("reverseHash(%+v) = %#x; Hash of the reverse = %#x", want, got, hw)
		}
	}
}

// TestIsReverseOf: the word-wise comparison agrees with Reverse and ==.
func TestIsReverseOf(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for i := 0; i < 200000; i++ {
		a, b := randTuple(r), randTuple(r)
		switch r.IntN(3) {
		case 0:
			b = a.Reverse()
		case 1:
			b = a.Reverse()
			// One field off.
			switch r.IntN(5) {
			case 0:
				b.SrcPort++
			case 1:
				b.DstPort++
			case 2:
				b.Zone++
			case 3:
				b.Proto++
			case 4:
				b.Dst[15]++
			}
		}
		if got, want := b.isReverseOf(&a), b == a.Reverse(); got != want {
			t.Fatalf("%+v.isReverseOf(%+v) = %v; want %v", b, a, got, want)
		}
	}
}
