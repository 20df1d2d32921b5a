package flowexport

import (
	"encoding/binary"
	"testing"
	"time"
)

// decoded is a message read back by the reading rules of RFC 7011 (not
// by the encoder's code): templates learnt, then data records split by
// them.
type decoded struct {
	version, length         uint16
	exportTime, seq, domain uint32
	templates               map[uint16][]field
	records                 []map[uint16][]byte
}

func decode(t *testing.T, b []byte, templates map[uint16][]field) decoded {
	t.Helper()
	d := decoded{version: binary.BigEndian.Uint16(b), length: binary.BigEndian.Uint16(b[2:]),
		exportTime: binary.BigEndian.Uint32(b[4:]), seq: binary.BigEndian.Uint32(b[8:]), domain: binary.BigEndian.Uint32(b[12:]),
		templates: templates}
	if int(d.length) != len(b) {
		t.Fatalf("header length %d, message %d bytes", d.length, len(b))
	}
	for off := 16; off < len(b); {
		id, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if l < 4 || off+l > len(b) {
			t.Fatalf("set at %d: length %d", off, l)
		}
		body := b[off+4 : off+l]
		switch {
		case id == 2:
			for len(body) > 0 {
				tid, n := binary.BigEndian.Uint16(body), int(binary.BigEndian.Uint16(body[2:]))
				var fs []field
				for i := 0; i < n; i++ {
					fs = append(fs, field{binary.BigEndian.Uint16(body[4+4*i:]), binary.BigEndian.Uint16(body[6+4*i:])})
				}
				d.templates[tid] = fs
				body = body[4+4*n:]
			}
		case id >= 256:
			fs := d.templates[id]
			rl := 0
			for _, f := range fs {
				rl += int(f.len)
			}
			if rl == 0 || len(body)%rl != 0 {
				t.Fatalf("data set %d: %d bytes for records of %d", id, len(body), rl)
			}
			for ; len(body) > 0; body = body[rl:] {
				rec, o := map[uint16][]byte{}, 0
				for _, f := range fs {
					rec[f.id] = body[o : o+int(f.len)]
					o += int(f.len)
				}
				d.records = append(d.records, rec)
			}
		}
		off += l
	}
	return d
}

func TestMessage(t *testing.T) {
	now := time.Unix(1764590000, 0)
	start := now.Add(-90 * time.Second)
	r4 := Record{Src: [16]byte{198, 18, 0, 1}, Dst: [16]byte{198, 18, 0, 2}, SrcPort: 40000, DstPort: 5001, Proto: 6,
		Octets: 10485760, Packets: 7300, Start: start, End: now, EndReason: EndOfFlow, Event: EventDeleted}
	r6 := Record{V6: true, Src: [16]byte{0x20, 0x01, 0, 2, 15: 1}, Dst: [16]byte{0x20, 0x01, 0, 2, 15: 2}, ICMPTypeCode: 8 << 8,
		Proto: 58, Octets: 104, Packets: 1, Start: start, End: now, EndReason: EndIdle, Event: EventDeleted}
	e := Encoder{Domain: 7}
	msg, n := e.Message(now, true, []Record{r4, r4, r6}, MaxMessage)
	d := decode(t, msg, map[uint16][]field{})
	if n != 3 || d.version != 10 || d.exportTime != uint32(now.Unix()) || d.seq != 0 || d.domain != 7 || len(d.records) != 3 {
		t.Fatalf("message: %d records of 3, %+v", n, d)
	}
	if len(d.templates[256]) != 12 || len(d.templates[257]) != 12 {
		t.Fatalf("templates: %v", d.templates)
	}
	rec := d.records[0]
	u16 := func(b []byte) uint64 { return uint64(binary.BigEndian.Uint16(b)) }
	u64 := func(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
	if string(rec[ieSourceIPv4Address]) != "\xc6\x12\x00\x01" || string(rec[ieDestinationIPv4Address]) != "\xc6\x12\x00\x02" ||
		u16(rec[ieSourceTransportPort]) != 40000 || u16(rec[ieDestinationTransportPort]) != 5001 || rec[ieProtocolIdentifier][0] != 6 ||
		u64(rec[ieOctetDeltaCount]) != 10485760 || u64(rec[iePacketDeltaCount]) != 7300 ||
		u64(rec[ieFlowStartMilliseconds]) != uint64(start.UnixMilli()) || u64(rec[ieFlowEndMilliseconds]) != uint64(now.UnixMilli()) ||
		rec[ieFlowEndReason][0] != EndOfFlow || rec[ieFirewallEvent][0] != EventDeleted {
		t.Errorf("IPv4 record: %x", rec)
	}
	if rec := d.records[2]; len(rec[ieSourceIPv6Address]) != 16 || rec[ieSourceIPv6Address][15] != 1 || u16(rec[ieICMPTypeCodeIPv6]) != 8<<8 {
		t.Errorf("IPv6 record: %x", rec)
	}
	// The next message's sequence number counts the records sent; a
	// message too small for all takes what fits.
	msg, n = e.Message(now, false, []Record{r4, r4, r4, r4}, 16+4+2*recordLen(false))
	if d := decode(t, msg, d.templates); n != 2 || d.seq != 3 || len(d.records) != 2 {
		t.Fatalf("second message: %d records, seq %d", n, d.seq)
	}
}
