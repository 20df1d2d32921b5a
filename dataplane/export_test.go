package dataplane

import "github.com/dpfw/dpfw/packet"

// FragSlot returns the fragment-table slot a fragment falls in, for the
// external tests (two pipelines place the same datagram apart, by their
// seeds).
func (pl *Pipeline) FragSlot(p *packet.Parsed, zone uint16) int {
	k := keyOf(p, zone)
	return pl.frags.slot(&k)
}
