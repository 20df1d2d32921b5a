package hasync

import (
	"slices"
	"testing"

	"github.com/dpfw/dpfw/control/hasync/wire"
)

// TestResendQueue: ranges come out in order, wherever they are; the
// numbers wrap around; a full queue forgets its oldest.
func TestResendQueue(t *testing.T) {
	q := resendQueue{buf: make([]rsEntry, 8)}
	seqs := func() []uint32 {
		var out []uint32
		q.take(func(uint32) bool { return false }, nil)
		for i := range q.n {
			out = append(out, q.buf[(q.head+i)%len(q.buf)].h.Seq)
		}
		return out
	}
	for s := uint32(1<<32 - 3); s != 3; s++ { // 2^32-3 … 2: across the wrap
		if !q.push(wire.Header{Seq: s}, []byte{byte(s)}) {
			t.Fatalf("push %d refused", s)
		}
	}
	q.take(inRange(1<<32-3, 1<<32-2), nil)
	var got []uint32
	q.take(inRange(0, 1), func(e *rsEntry) { got = append(got, e.h.Seq) })
	if !slices.Equal(got, []uint32{0, 1}) || !slices.Equal(seqs(), []uint32{1<<32 - 1, 2}) {
		t.Fatalf("took %v, left %v", got, seqs())
	}
	for s := uint32(10); s < 17; s++ {
		q.push(wire.Header{Seq: s}, nil)
	}
	if ok := q.push(wire.Header{Seq: 17}, nil); ok || q.n != 8 || seqs()[0] != 10 {
		t.Errorf("full: push %v, %d kept, oldest %d", ok, q.n, seqs()[0])
	}
	if q.push(wire.Header{Seq: 18}, make([]byte, rsBody+1)) {
		t.Error("a body over rsBody was kept")
	}
}
