package hasync

import (
	"bytes"
	"testing"
	"time"
)

// FuzzAuthOpen: any datagram is refused or opened without a panic; one
// opened is sealed with the key, its messages returned whole; a sealed
// datagram opens to what was sealed, and with any one byte changed it
// does not.
func FuzzAuthOpen(f *testing.F) {
	key := []byte("fuzzing key of 24 bytes!")
	now := time.Unix(1_800_000_000, 0)
	f.Add(newAuth(key).seal([]byte{1, 2, 0, 8, 0, 0, 0, 1}, now), uint16(3))
	f.Add([]byte{}, uint16(0))
	f.Add(make([]byte, AuthLen), uint16(1))
	f.Fuzz(func(t *testing.T, b []byte, flip uint16) {
		a := newAuth(key)
		if body, why := a.open(append([]byte(nil), b...), now); why == authOK {
			resealed := newAuth(key).seal(append([]byte(nil), body...), time.Unix(0, a.last))
			if !bytes.Equal(resealed, b) {
				t.Fatalf("opened %x, which does not reseal to itself", b)
			}
		}
		sealed := newAuth(key).seal(append([]byte(nil), b...), now)
		if body, why := newAuth(key).open(append([]byte(nil), sealed...), now); why != authOK || !bytes.Equal(body, b) {
			t.Fatalf("sealed %x: opened %x, refusal %d", b, body, why)
		}
		sealed[int(flip)%len(sealed)] ^= 0x40
		if _, why := newAuth(key).open(sealed, now); why == authOK {
			t.Fatalf("opened a sealed datagram with byte %d changed", int(flip)%len(sealed))
		}
	})
}
