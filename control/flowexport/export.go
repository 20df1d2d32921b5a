package flowexport

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// MaxMessage bounds a message so that it fits a 1500-byte MTU in UDP.
const MaxMessage = 1400

// QueueLen bounds the records waiting to be sent; beyond it they are lost
// (counted).
const QueueLen = 65536

// Config is where and how to export.
type Config struct {
	// Collectors are host:port UDP addresses.
	Collectors []string
	// TemplateRefresh is how often the templates are sent again.
	TemplateRefresh time.Duration
	// Domain is the observation domain id.
	Domain uint32
}

// Exporter sends records to the collectors from its own goroutine (Run);
// Offer never blocks.
type Exporter struct {
	conns   []net.Conn
	enc     Encoder
	in      chan Record
	refresh time.Duration
	// Counters: records queued and lost (queue full), messages and
	// records sent, failed sends (a collector down).
	Queued, Lost, Messages, Records, SendErrors atomic.Uint64
}

// New opens a UDP socket to each collector.
func New(cfg Config) (*Exporter, error) {
	if len(cfg.Collectors) == 0 {
		return nil, errors.New("flow export: no collector")
	}
	x := &Exporter{enc: Encoder{Domain: cfg.Domain}, in: make(chan Record, QueueLen), refresh: cfg.TemplateRefresh}
	for _, c := range cfg.Collectors {
		conn, err := net.Dial("udp", c)
		if err != nil {
			x.Close()
			return nil, fmt.Errorf("flow_export collector %s: %w", c, err)
		}
		x.conns = append(x.conns, conn)
	}
	return x, nil
}

// Close closes the sockets.
func (x *Exporter) Close() {
	for _, c := range x.conns {
		c.Close()
	}
}

// Offer queues r, or counts it lost when the queue is full.
func (x *Exporter) Offer(r Record) {
	select {
	case x.in <- r:
		x.Queued.Add(1)
	default:
		x.Lost.Add(1)
	}
}

// flushEvery is the longest a record waits for others to share its
// message.
const flushEvery = 100 * time.Millisecond

// Run sends the queued records until quit, then what is left: the
// templates first and every TemplateRefresh (alone when no record comes),
// records batched into messages of at most MaxMessage bytes.
func (x *Exporter) Run(quit <-chan struct{}) {
	var batch []Record
	var lastTemplates time.Time
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	send := func(now time.Time) {
		for first := true; first || len(batch) > 0; first = false {
			templates := lastTemplates.IsZero() || now.Sub(lastTemplates) >= x.refresh
			if !templates && len(batch) == 0 {
				return
			}
			msg, n := x.enc.Message(now, templates, batch, MaxMessage)
			if templates {
				lastTemplates = now
			}
			x.write(msg, n)
			batch = batch[n:]
		}
		batch = batch[:0]
	}
	for {
		select {
		case r := <-x.in:
			batch = append(batch, r)
			if len(batch) >= 64 {
				send(time.Now())
			}
		case <-tick.C:
			send(time.Now())
		case <-quit:
			for len(x.in) > 0 {
				batch = append(batch, <-x.in)
			}
			send(time.Now())
			return
		}
	}
}

func (x *Exporter) write(msg []byte, records int) {
	for _, c := range x.conns {
		if _, err := c.Write(msg); err != nil {
			x.SendErrors.Add(1)
			continue
		}
	}
	x.Messages.Add(1)
	x.Records.Add(uint64(records))
}
