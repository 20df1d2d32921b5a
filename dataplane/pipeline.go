package dataplane

import (
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/packet"
)

// BurstSize is the most frames a burst holds (DPDK's rx burst size).
const BurstSize = 32

// Options are a pipeline's settings.
type Options struct {
	// PassNonIP forwards ARP and other non-IP frames between paired ports.
	PassNonIP bool
}

// Burst is one burst's frames and results, preallocated per worker.
type Burst struct {
	N       int
	Parsed  [BurstSize]packet.Parsed
	Verdict [BurstSize]filter.Verdict
	Reason  [BurstSize]filter.DropReason
}

// Pipeline gives verdicts to bursts of frames. Owned by one worker.
type Pipeline struct {
	noCopy noCopy
	opts   Options
	// Stats are counted here, in plain memory, by the owning worker, and
	// published to counters by Publish.
	Stats    Snapshot
	counters *Counters
}

// NewPipeline returns a pipeline that publishes its counters to c.
func NewPipeline(opts Options, c *Counters) *Pipeline {
	return &Pipeline{opts: opts, counters: c}
}

// Counters returns the pipeline's published counters.
func (pl *Pipeline) Counters() *Counters { return pl.counters }

// Publish makes Stats visible to readers of Counters.
func (pl *Pipeline) Publish() { pl.counters.Publish(&pl.Stats) }

// Decode decodes frame i of the burst. It exists so that feeders (the DPDK
// worker, tests, benchmarks) fill a Burst the same way.
func (b *Burst) Decode(i int, frame []byte) { packet.Decode(frame, &b.Parsed[i]) }

// Process gives a verdict to frames [0, b.N) of b, received at time now (ns,
// monotonic) on input port in. It never allocates.
func (pl *Pipeline) Process(b *Burst, in uint16, now int64) {
	n := b.N
	if n > BurstSize {
		n = BurstSize
	}
	st := &pl.Stats
	for i := 0; i < n; i++ {
		p := &b.Parsed[i]
		v, r := filter.Accept, filter.DropNone
		switch p.Kind {
		case packet.Malformed:
			// filter.DropReason mirrors packet.Reason for malformed frames.
			v, r = filter.Drop, filter.DropReason(p.Reason)
		case packet.NonIP:
			if !pl.opts.PassNonIP {
				v, r = filter.Drop, filter.DropNonIP
			}
		}
		b.Verdict[i], b.Reason[i] = v, r
		if v == filter.Accept {
			st.Accepted++
		} else {
			st.Drops[r]++
		}
	}
}

// noCopy makes go vet's copylocks check reject copies of the structs that
// embed it (gVisor's sync.NoCopy).
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
