package hasync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"
)

// Authenticated sync (Config.Key), between dpfw nodes: conntrackd's
// protocol has no authentication, so this is an extension a conntrackd
// peer cannot speak. Each datagram ends with a trailer of AuthLen bytes:
// the sender's clock (unix nanoseconds, 8 bytes, big-endian) and the first
// 16 bytes of HMAC-SHA256, keyed with the shared key, over the datagram
// and that clock. A receiver takes a datagram only if its MAC verifies
// and its clock is later than that of the last datagram it took from the
// peer (a replayed or reordered datagram is refused; FTFW asks again for
// what a refused one carried); the first one after the node starts must
// be within MaxClockSkew of the receiver's clock, so that an old capture
// replayed to a node that restarted is refused too.

// AuthLen is the trailer's length.
const AuthLen = 8 + authMAC

const authMAC = 16

// MaxClockSkew bounds how far the first authenticated datagram's clock
// may be from the receiver's.
const MaxClockSkew = time.Minute

// MinKeyLen is the shortest shared key taken.
const MinKeyLen = 16

// auth seals (sender) or opens (receiver) datagrams; one of each per
// node, as hash.Hash is not safe for concurrent use.
type auth struct {
	mac  hash.Hash
	sum  []byte
	last int64 // the receiver's: the clock of the last datagram taken
}

func newAuth(key []byte) *auth {
	return &auth{mac: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

// seal appends the trailer for datagram b sent at now.
func (a *auth) seal(b []byte, now time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(now.UnixNano()))
	return append(b, a.digest(b)...)
}

// digest is the MAC of b (the datagram and its clock).
func (a *auth) digest(b []byte) []byte {
	a.mac.Reset()
	a.mac.Write(b)
	a.sum = a.mac.Sum(a.sum[:0])
	return a.sum[:authMAC]
}

// Why open refuses a datagram.
const (
	authOK = iota
	authBad
	authStale
)

// open checks datagram b's trailer at now and returns its messages, or
// why it is refused.
func (a *auth) open(b []byte, now time.Time) ([]byte, int) {
	if len(b) < AuthLen {
		return nil, authBad
	}
	body, mac := b[:len(b)-authMAC], b[len(b)-authMAC:]
	if !hmac.Equal(a.digest(body), mac) {
		return nil, authBad
	}
	at := int64(binary.BigEndian.Uint64(body[len(body)-8:]))
	if a.last == 0 {
		if d := time.Duration(now.UnixNano() - at); d > MaxClockSkew || d < -MaxClockSkew {
			return nil, authStale
		}
	} else if at <= a.last {
		return nil, authStale
	}
	a.last = at
	return body[:len(body)-8], authOK
}
