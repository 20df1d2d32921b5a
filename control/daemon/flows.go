package daemon

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/flowexport"
	"github.com/prometheus/client_golang/prometheus"
)

// IPFIX flow export (flow_export): the connections' DESTROY events, from
// the events hub, become records of their last counters; every active
// timeout, a listing of every connection reports those open longer than
// it. One goroutine does both; the exporter sends from its own.

// startFlowExport starts the export when flow_export names collectors.
func (d *Daemon) startFlowExport() error {
	fe := d.Config.FlowExport
	if !fe.Enabled() {
		return nil
	}
	x, err := flowexport.New(flowexport.Config{Collectors: fe.Collectors, TemplateRefresh: fe.TemplateRefresh, Domain: fe.ObservationDomain})
	if err != nil {
		return err
	}
	d.exporter = x
	l := d.events.listen(func(e *conntrack.Event) bool { return e.Type == conntrack.EventDestroy })
	go func() {
		x.Run(d.quit)
		x.Close()
	}()
	go d.exportFlows(x, flowexport.NewFlows(fe.ActiveTimeout), l)
	d.log.Info("flow export (IPFIX over UDP)", "collectors", fe.Collectors, "active_timeout", fe.ActiveTimeout, "observation_domain", fe.ObservationDomain)
	return nil
}

// exportFlows turns events and listings into records until dpfw stops.
func (d *Daemon) exportFlows(x *flowexport.Exporter, flows *flowexport.Flows, l *listener[conntrack.Event]) {
	defer d.events.unlisten(l)
	tick := time.NewTicker(flows.Active)
	defer tick.Stop()
	seen := d.events.ringsLost()
	for {
		select {
		case <-d.quit:
			return
		case e := <-l.ch:
			for _, r := range flows.Destroyed(&e.v.Entry, e.v.Reason, e.at) {
				x.Offer(r)
			}
		case <-tick.C:
			// DESTROY events lost (a ring or this queue full) are
			// flows lost.
			now := d.events.ringsLost()
			x.Lost.Add(now - seen + uint64(d.events.takeLost(l)))
			seen = now
			d.tickFlows(x, flows)
		}
	}
}

// tickFlows reports the connections open longer than the active timeout.
func (d *Daemon) tickFlows(x *flowexport.Exporter, flows *flowexport.Flows) {
	ctx, cancel := context.WithTimeout(context.Background(), flows.Active)
	defer cancel()
	now, alive := time.Now(), map[flowexport.Key]bool{}
	all := ConnFilter{Proto: -1, Orig: TupleFilter{SPort: -1, DPort: -1}, Reply: TupleFilter{SPort: -1, DPort: -1}}
	_, err := d.Conntrack(ctx, all, false, math.MaxInt, func(es []conntrack.Entry) error {
		for i := range es {
			alive[flowexport.KeyOf(&es[i])] = true
			for _, r := range flows.Tick(&es[i], now) {
				x.Offer(r)
			}
		}
		return nil
	})
	if err != nil {
		d.log.Warn("flow export: listing the connections for the active timeout", "err", err)
		return
	}
	flows.Forget(alive)
}

// FlowExportCollectors are the export's metrics (none when it is off).
func (d *Daemon) FlowExportCollectors() []prometheus.Collector {
	x := d.exporter
	if x == nil {
		return nil
	}
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "dpfw", Subsystem: "flow_export", Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		counter("records_total", "IPFIX flow records sent (one per direction of a connection that carried packets).", &x.Records),
		counter("messages_total", "IPFIX messages sent, to each collector.", &x.Messages),
		counter("lost_total", "Flow records lost: the export queue was full, or the connection events they come from were lost.", &x.Lost),
		counter("send_errors_total", "IPFIX messages a collector's socket refused (is the collector up?).", &x.SendErrors),
	}
}
