package daemon

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/cgo/dpdk"
	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/flowexport"
	"github.com/dpfw/dpfw/control/metrics"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/worker"
	"github.com/dpfw/dpfw/packet"
)

// The memory plan counts config.HeldFragments mbufs per worker for the
// fragments a pipeline holds: the two must agree.
var (
	_ [config.HeldFragments - dataplane.FragHeld]struct{}
	_ [dataplane.FragHeld - config.HeldFragments]struct{}
)

// Port is a started DPDK port.
type Port struct {
	Config config.Port
	ID     dpdk.Port
	Info   dpdk.PortInfo
	// Peer is the index in Daemon.Ports of the paired port, or -1.
	Peer int
}

// Daemon is a running data plane.
type Daemon struct {
	// Config is the configuration dpfw started with; reloads change only
	// the rule set (active has the config it was compiled from).
	Config *config.Config
	active atomic.Pointer[config.Config]
	// ready is set once every port is started and every worker polls;
	// cleared when stopping.
	ready   atomic.Bool
	reloads reloader
	quit    chan struct{}
	// syncReady is closed once the sync's start-up resync is in (or at
	// once without sync).
	syncReady chan struct{}
	EAL       EALPlan
	Pool      *dpdk.Mempool
	Ports     []Port
	Workers   []*worker.Worker
	// Rules is the compiled rule set the workers load once per burst.
	Rules    atomic.Pointer[filter.Active]
	trackers []*conntrack.Tracker
	rings    []*dpdk.Ring
	logs     chan dataplane.LogRecord
	pipes    []*dataplane.Pipeline
	// events fans the trackers' connection events out.
	events hub[conntrack.Event]
	// traces are the attached packet traces (nil: none), which the
	// workers load once per burst; traceHub fans their records out.
	traces   atomic.Pointer[dataplane.TraceSet]
	traceMu  sync.Mutex
	traceHub hub[dataplane.TraceRecord]
	// exporter sends IPFIX flow records (nil: flow_export is off).
	exporter *flowexport.Exporter
	// sync is the connection-state sync (nil: sync is off); standby,
	// while set, makes the workers forward nothing (an HA backup).
	sync    *syncState
	standby atomic.Bool
	log     *slog.Logger
	// ConfigPath is the file Reload reads ("" for the embedded default).
	ConfigPath string

	wg       sync.WaitGroup
	errMu    sync.Mutex
	errs     []error
	stopOnce sync.Once
	done     chan struct{}
}

// Start initializes DPDK and starts every port and worker. On error, what was
// started is stopped again.
func Start(cfg *config.Config, path string, log *slog.Logger) (_ *Daemon, err error) {
	d := &Daemon{Config: cfg, ConfigPath: path, EAL: PlanEAL(cfg), log: log, done: make(chan struct{}), quit: make(chan struct{}), syncReady: make(chan struct{})}
	if !cfg.Sync.Enabled() {
		close(d.syncReady)
	}
	d.active.Store(cfg)
	d.reloads.kick = make(chan struct{}, 1)
	for _, w := range cfg.Warnings() {
		log.Warn("config: "+w.Msg, "key", w.Key)
	}
	if err := preflight(cfg, log); err != nil {
		return nil, err
	}
	if err := d.initEAL(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := d.closePorts(); cerr != nil {
				log.Warn("cleaning up after a failed start", "err", cerr)
			}
		}
	}()
	d.isolate()
	if err := d.startPorts(); err != nil {
		return nil, err
	}
	portIDs := map[string]uint16{}
	for _, p := range d.Ports {
		portIDs[p.Config.Name] = uint16(p.ID)
	}
	f, infos, err := d.compileRules(portIDs)
	if err != nil {
		return nil, err
	}
	var seedBytes [8]byte
	if _, err := rand.Read(seedBytes[:]); err != nil {
		return nil, fmt.Errorf("conntrack hash seed: %w", err)
	}
	seed := binary.LittleEndian.Uint64(seedBytes[:])
	d.logs = make(chan dataplane.LogRecord, 1024)
	go d.writeLogs(d.logs)
	log.Info("connection tracking", "capacity_per_worker", cfg.Conntrack.Capacity)
	plan := ruleset.MemoryPlan(cfg, f)
	if err := plan.Fits(ruleset.MachineMemory()); err != nil {
		return nil, err
	}
	log.Info("memory allocated at start-up (bounded by the configuration)", "total", plan.String())
	wplan := PlanWorkers(cfg, d.facts())
	rings, err := d.steeringRings(wplan)
	if err != nil {
		return nil, err
	}
	d.newWorkers(infos, seed, wplan, rings)
	if err := d.startFlowExport(); err != nil {
		return nil, err
	}
	if err := d.startSync(); err != nil {
		return nil, err
	}
	if err := d.runWorkers(); err != nil {
		return nil, err
	}
	d.ready.Store(true)
	go d.runReloads(d.quit)
	go d.watchLosses(d.quit, lossLogEvery)
	log.Info("data plane running", "workers", len(cfg.Workers.CPUs), "cpus", cfg.Workers.CPUs, "mbufs", cfg.Mempool.Mbufs)
	return d, nil
}

// preflight logs the pre-flight warnings and fails on its errors.
func preflight(cfg *config.Config, log *slog.Logger) error {
	var preflightErrs []string
	for _, f := range Preflight(cfg, LocalHost(), ruleset.MemoryPlan(cfg, nil).Total()) {
		if f.Warning {
			log.Warn("pre-flight: "+f.Msg, "key", f.Key)
		} else {
			preflightErrs = append(preflightErrs, f.Key+": "+f.Msg)
		}
	}
	if len(preflightErrs) > 0 {
		return fmt.Errorf("pre-flight check failed (dpfw check shows it too):\n  %s", strings.Join(preflightErrs, "\n  "))
	}
	return nil
}

// initEAL starts DPDK's environment abstraction layer.
func (d *Daemon) initEAL() error {
	log := d.log
	flush, err := routeDPDKLog(log)
	if err != nil {
		log.Warn("DPDK's log stays on stderr", "err", err)
		flush = func() {}
	}
	defer flush()
	log.Info("starting EAL", "args", d.EAL.Args, "hugepages", d.EAL.Hugepages, "why", d.EAL.Why)
	if err := dpdk.Init(d.EAL.Args); err != nil {
		return fmt.Errorf("EAL init failed (arguments %q): %w; check eal.* in the config, hugepages, and that no other DPDK process uses --file-prefix %s",
			d.EAL.Args, err, d.Config.EAL.FilePrefix)
	}
	return nil
}

// isolate moves the control threads off the worker CPUs.
func (d *Daemon) isolate() {
	cfg, log := d.Config, d.log
	house, err := isolateWorkers(cfg.Workers.CPUs)
	if err != nil {
		log.Warn("could not move control threads off the worker CPUs", "err", err)
	} else if house == nil {
		log.Warn("every CPU runs a worker: control threads share them", "cpus", cfg.Workers.CPUs)
	} else {
		log.Info("control threads on housekeeping CPUs", "cpus", house)
	}
	if n, ok := fixProcs(len(cfg.Workers.CPUs), len(house)); ok {
		log.Info("Go scheduler: one P per polling worker plus the housekeeping CPUs", "gomaxprocs", n)
	}
}

// startPorts creates the mbuf pool and starts every port, pairing the
// ports of each link.
func (d *Daemon) startPorts() error {
	cfg, log := d.Config, d.log
	nw := len(cfg.Workers.CPUs)
	var err error
	d.Pool, err = dpdk.NewMempool("dpfw_mbufs", uint(cfg.Mempool.Mbufs), uint(cfg.Mempool.Cache), uint16(cfg.Mempool.DataRoom), -1)
	if err != nil {
		return fmt.Errorf("mempool (mempool.mbufs %d × %d bytes): %w; lower mempool.mbufs or raise eal.memory_mb",
			cfg.Mempool.Mbufs, cfg.Mempool.DataRoom, err)
	}
	byName := map[string]int{}
	for i, pc := range cfg.Ports {
		id, err := dpdk.PortByName(pc.DeviceName())
		if err != nil {
			return fmt.Errorf("ports[%d] (%s): device %q was not probed by DPDK: %w; check ports[%d].device (the EAL log above says why)", i, pc.Name, pc.Device, err, i)
		}
		info, err := id.Setup(dpdk.PortConfig{
			RxQueues: uint16(nw), TxQueues: uint16(nw),
			RxDesc: uint16(pc.RxDesc), TxDesc: uint16(pc.TxDesc),
			Promiscuous: *pc.Promiscuous, Pool: d.Pool, RxChecksum: cfg.Dataplane.Checksum != "off", MTU: uint16(pc.MTU),
		})
		d.Ports = append(d.Ports, Port{Config: pc, ID: id, Info: info, Peer: -1})
		if err != nil {
			hint := fmt.Sprintf("with %d workers each port needs %d rx and tx queues (workers.cpus)", nw, nw)
			if strings.Contains(pc.Device, "infinite_rx=1") {
				hint = "net_pcap with infinite_rx=1 keeps the whole pcap in mbufs: raise mempool.mbufs above the pcap's packet count"
			}
			return fmt.Errorf("ports[%d] (%s, %s) failed to start: %w; %s", i, pc.Name, pc.Device, err, hint)
		}
		if err := CheckTap(i, pc, info.IfIndex, HostInterfaces); err != nil {
			return err
		}
		byName[pc.Name] = i
		if nw > 1 && !hasRSS(info) && cfg.Workers.Steering == "off" {
			log.Warn("port has no RSS and workers.steering is off: the two directions of a connection may reach different workers, and connection states will be wrong",
				"port", pc.Name, "driver", info.Driver)
		}
		log.Info("port started", "name", pc.Name, "device", pc.Device, "port_id", uint16(id), "driver", info.Driver, "ifindex", info.IfIndex,
			"mac", info.MAC.String(), "rss", fmt.Sprintf("%#x", info.RSSEnabled), "queues", nw,
			"rx_checksum_offload", dpdk.RxChecksumNames(info.RxChecksum), "checksum", cfg.Dataplane.Checksum)
	}
	for _, l := range cfg.Links {
		a, b := byName[l.Ports[0]], byName[l.Ports[1]]
		d.Ports[a].Peer, d.Ports[b].Peer = b, a
	}
	return nil
}

// compileRules compiles the configured rule set and publishes it.
func (d *Daemon) compileRules(portIDs map[string]uint16) (*filter.Filter, []dataplane.PortInfo, error) {
	cfg, log := d.Config, d.log
	f, err := ruleset.Compile(cfg, portIDs, 1)
	if err != nil {
		return nil, nil, fmt.Errorf("rules: %w", err)
	}
	d.Rules.Store(filter.Install(f, len(cfg.Workers.CPUs), nil))
	configInfo.WithLabelValues(configHash(cfg), "1").Set(1)
	lastReloadOK.Set(1)
	lastReloadTime.SetToCurrentTime()
	log.Info("rules compiled", "rules", f.Stats.Rules, "bitsets", f.Stats.Bitsets, "classifier_bytes", f.Stats.Bytes)
	infos, err := ruleset.PortInfos(cfg, portIDs)
	if err != nil {
		return nil, nil, err
	}
	return f, infos, nil
}

// facts is what the worker plan needs of the started ports.
func (d *Daemon) facts() []PortFacts {
	fs := make([]PortFacts, len(d.Ports))
	for i, p := range d.Ports {
		fs[i] = PortFacts{RSS: hasRSS(p.Info), Peer: p.Peer}
	}
	return fs
}

// steeringRings creates, for a plan that steers, one ring per worker and
// port: rings[w][p] carries port p's packets to worker w.
func (d *Daemon) steeringRings(plan WorkerPlan) ([][]*dpdk.Ring, error) {
	if !plan.Steer {
		return nil, nil
	}
	var rings [][]*dpdk.Ring
	for o := range plan.Queues {
		var rs []*dpdk.Ring
		for pi := range d.Ports {
			r, err := dpdk.NewRing(fmt.Sprintf("dpfw_steer_%d_%d", o, pi), 4096, -1)
			if err != nil {
				return nil, fmt.Errorf("steering ring for worker %d: %w", o, err)
			}
			rs = append(rs, r)
			d.rings = append(d.rings, r)
		}
		rings = append(rings, rs)
	}
	d.log.Info("software steering: each connection is handled by one worker, chosen by a symmetric hash of its tuple", "workers", len(plan.Queues))
	return rings, nil
}

// newWorkers builds one tracker, pipeline and worker per worker CPU, as
// the plan says.
func (d *Daemon) newWorkers(infos []dataplane.PortInfo, seed uint64, plan WorkerPlan, rings [][]*dpdk.Ring) {
	cfg := d.Config
	nw := len(cfg.Workers.CPUs)
	for w, cpu := range cfg.Workers.CPUs {
		tc := ruleset.TrackerConfig(cfg, seed)
		tc.Worker = w
		tr := conntrack.NewTracker(tc)
		d.trackers = append(d.trackers, tr)
		d.events.rings = append(d.events.rings, tr.Events())
		traceRing := dataplane.NewTraceRing()
		d.traceHub.rings = append(d.traceHub.rings, traceRing)
		opts := dataplane.Options{PassNonIP: cfg.Dataplane.NonIP == "pass", Ports: infos, Worker: w,
			Workers: nw, Steer: plan.Steer, SteerSeed: seed ^ 0x5bd1e995,
			RejectPerSecond: cfg.Dataplane.RejectPerSecond, Log: d.logs, LogPerSecond: cfg.Dataplane.LogPerSecond,
			Checksum: ruleset.ChecksumMode(cfg), Trace: &d.traces, TraceRing: traceRing, Standby: &d.standby}
		var qs []worker.Queue
		for _, qp := range plan.Queues[w] {
			p := d.Ports[qp.Port]
			q := worker.Queue{RxPort: p.ID, RxQueue: qp.Queue, TxQueue: qp.Queue, PortIndex: qp.Port}
			if qp.Peer >= 0 {
				q.TxPort, q.Routed = d.Ports[qp.Peer].ID, true
			}
			if qp.Ring {
				q.Ring = rings[w][qp.Port]
			}
			qs = append(qs, q)
		}
		pl := dataplane.NewPipeline(opts, tr, &d.Rules, new(dataplane.Counters))
		d.pipes = append(d.pipes, pl)
		wk := worker.New(worker.Config{ID: w, CPU: cpu, Queues: qs, IdlePolls: cfg.Workers.IdlePolls, IdleSleep: cfg.Workers.IdleSleep,
			IdleSleepMax: cfg.Workers.IdleSleepMax, SteerRings: rings}, pl)
		d.Workers = append(d.Workers, wk)
	}
}

// runWorkers starts the workers and waits until every one polls.
func (d *Daemon) runWorkers() error {
	cfg := d.Config
	for _, wk := range d.Workers {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if err := wk.Run(); err != nil {
				d.fail(err)
			}
		}()
	}
	go func() { d.wg.Wait(); close(d.done) }()
	// Ready when every worker polls its queues (or fails: a worker that
	// cannot register with DPDK returns at once).
	for _, wk := range d.Workers {
		select {
		case <-wk.Polling():
		case <-d.done:
		case <-time.After(10 * time.Second):
			d.stopWorkers()
			return fmt.Errorf("worker on cpu %v did not start polling within 10 s", cfg.Workers.CPUs)
		}
	}
	if err := d.Err(); err != nil {
		d.stopWorkers()
		return err
	}
	return nil
}

func (d *Daemon) fail(err error) {
	d.errMu.Lock()
	d.errs = append(d.errs, err)
	d.errMu.Unlock()
	d.log.Error("worker failed", "err", err)
}

// Err returns the workers' errors so far.
func (d *Daemon) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return errors.Join(d.errs...)
}

// Ready reports whether dpfw forwards: every port started, every worker
// polling, not stopping, and with sync, the peer's connections in
// (SyncReady).
func (d *Daemon) Ready() bool { return d.ready.Load() && (d.sync == nil || d.sync.ready.Load()) }

// Healthy reports whether every worker is still running.
func (d *Daemon) Healthy() bool {
	select {
	case <-d.done:
		return false
	default:
		return d.Err() == nil
	}
}

// Done is closed when every worker has returned.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Snapshots returns each worker's counters.
func (d *Daemon) Snapshots() []dataplane.Snapshot {
	out := make([]dataplane.Snapshot, len(d.Workers))
	for i, w := range d.Workers {
		out[i] = w.Counters().Snapshot()
	}
	return out
}

// Total sums every worker's counters.
func (d *Daemon) Total() dataplane.Snapshot {
	var t dataplane.Snapshot
	for _, s := range d.Snapshots() {
		t.Add(&s)
	}
	return t
}

func (d *Daemon) stopWorkers() {
	for _, w := range d.Workers {
		w.Stop()
	}
	d.wg.Wait()
}

// Stop stops the workers, then the ports, and reports mbufs still in use
// (a leak) as an error. It is safe to call more than once.
func (d *Daemon) Stop() error {
	var err error
	d.stopOnce.Do(func() {
		d.ready.Store(false)
		close(d.quit)
		d.stopWorkers()
		d.logAccounting()
		if d.logs != nil {
			close(d.logs)
		}
		for _, r := range d.rings {
			r.DrainFree()
		}
		err = errors.Join(d.Err(), d.closePorts())
		for _, r := range d.rings {
			r.Free()
		}
		for _, tr := range d.trackers {
			tr.Table.Free()
		}
	})
	return err
}

// logAccounting checks, once the workers have stopped and published their
// last counters, that every packet received was transmitted, dropped (with
// a reason) or handed to another worker: rx = tx + dropped + steered.
func (d *Daemon) logAccounting() {
	var rx, tx, dropped, steered uint64
	for _, w := range d.Workers {
		c := w.Counters().Snapshot()
		rx += c.RxPackets
		tx += c.TxPackets
		steered += c.Steered
		dropped += c.TotalDrops()
	}
	level := slog.LevelInfo
	if rx != tx+dropped+steered {
		level = slog.LevelError
	}
	// tx counts what the devices took; of it, what they then failed to
	// send (e.g. a tap whose interface is down) is their tx error count.
	var txErrors, rxErrors uint64
	for _, p := range d.Ports {
		if st, err := p.ID.Stats(); err == nil {
			txErrors += st.OErrors
			rxErrors += st.IErrors
		}
	}
	if txErrors != 0 || rxErrors != 0 {
		level = max(level, slog.LevelWarn)
	}
	d.log.Log(context.Background(), level, "packet accounting", "rx", rx, "tx", tx, "dropped", dropped, "steered", steered,
		"unaccounted", int64(rx)-int64(tx+dropped+steered), "device_tx_errors", txErrors, "device_rx_errors", rxErrors)
}

// lossLogEvery is how often watchLosses looks (and so the most often it
// logs).
const lossLogEvery = 10 * time.Second

// watchLosses logs, at most once per interval each, the losses no packet
// path can log: frames the devices dropped before dpfw saw them (port
// rx_errors, e.g. larger than the mbuf data room), frames dpfw dropped as
// oversize, and frames the devices failed to send (tx_errors). Each is a
// metric too; the log line says what to do.
func (d *Daemon) watchLosses(quit <-chan struct{}, every time.Duration) {
	// The first look comes soon after start (losses of a misconfigured
	// MTU show at once), then every interval.
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	last := map[string]uint64{}
	delta := func(key string, now uint64) uint64 {
		dv := now - last[key]
		last[key] = now
		return dv
	}
	for {
		select {
		case <-quit:
			return
		case <-t.C:
			t.Reset(every)
		}
		if n := delta("oversize", d.Total().Drops[filter.DropOversize]); n > 0 {
			d.log.Warn("frames larger than one mbuf were dropped (drop reason oversize): raise mempool.data_room above the ports' MTU + 22, or lower the MTU", "frames", n, "data_room", d.Config.Mempool.DataRoom)
		}
		for _, p := range d.Ports {
			st, err := p.ID.Stats()
			if err != nil {
				continue
			}
			if n := delta("rx:"+p.Config.Name, st.IErrors); n > 0 {
				d.log.Warn("the device dropped received frames (port rx_errors): often frames larger than the MTU or the mbuf data room; check the sender's MTU against ports[].mtu and mempool.data_room", "port", p.Config.Name, "frames", n)
			}
			if n := delta("tx:"+p.Config.Name, st.OErrors); n > 0 {
				d.log.Warn("the device failed to send frames dpfw gave it (port tx_errors): is the link or the tap's interface down?", "port", p.Config.Name, "frames", n)
			}
		}
	}
}

// closePorts stops and closes every port, then checks the pool.
func (d *Daemon) closePorts() error {
	var errs []error
	for _, p := range d.Ports {
		if err := p.ID.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range d.Ports {
		if err := p.ID.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Pool != nil {
		if n := d.Pool.InUse(); n != 0 {
			errs = append(errs, fmt.Errorf("mbuf leak: %d mbufs still in use after every port closed", n))
		} else {
			d.log.Info("all mbufs returned to the pool", "pool", d.Config.Mempool.Mbufs)
		}
	}
	return errors.Join(errs...)
}

// MbufsInUse returns the pool's in-use count (mbufs in rx rings, in flight,
// and in per-lcore caches).
func (d *Daemon) MbufsInUse() uint { return d.Pool.InUse() }

// CTCounters returns each worker's published conntrack counters.
func (d *Daemon) CTCounters() []dataplane.CTSnapshot {
	out := make([]dataplane.CTSnapshot, len(d.Workers))
	for i, w := range d.Workers {
		out[i] = w.Counters().CT()
	}
	return out
}

// RuleStats returns the active rule set's counters, summed over workers,
// one per rule and one per chain policy.
func (d *Daemon) RuleStats() []metrics.RuleStat {
	f := d.Rules.Load()
	evictions := f.LimitEvictions()
	var out []metrics.RuleStat
	for id := 0; id < f.NumDecisions(); id++ {
		pk, by := f.State.Totals(uint32(id))
		name := f.DecisionName(uint32(id))
		chain, rule, _ := strings.Cut(name, "#")
		st := metrics.RuleStat{Chain: chain, Rule: rule, Packets: pk, Bytes: by}
		if id < len(f.Rules) {
			st.Target, st.Comment = f.Rules[id].Target, f.Rules[id].Comment
			st.Limited, st.LimitEvictions = f.Rules[id].Limit != nil, evictions[id]
		} else {
			st.Chain, st.Rule = strings.TrimSuffix(name, " policy"), "policy"
			st.Target = f.DecisionVerdict(uint32(id)).String()
		}
		out = append(out, st)
	}
	return out
}

// hasRSS reports whether a port really spreads flows by a symmetric hash.
// net_tap reports RSS hash types, but its RSS needs eBPF and rte_flow
// support (disabled on the kernels seen here, as of 2026-11-25): the kernel
// picks the queue, so dpfw treats taps as devices without RSS.
func hasRSS(info dpdk.PortInfo) bool { return info.RSSEnabled != 0 && info.Driver != "net_tap" }

// writeLogs formats LOG records like iptables' LOG target (IN= OUT= SRC=
// DST= LEN= PROTO= SPT= DPT=), with the rule's --log-prefix. Workers hand
// records over a buffered channel without blocking.
func (d *Daemon) writeLogs(ch <-chan dataplane.LogRecord) {
	names := map[uint16]string{}
	for _, p := range d.Ports {
		names[uint16(p.ID)] = p.Config.Name
	}
	for rec := range ch {
		f := d.Rules.Load()
		prefix, rule := "", f.DecisionName(rec.Rule)
		if f.Gen == rec.Generation && int(rec.Rule) < len(f.Rules) {
			prefix = f.Rules[rec.Rule].LogPrefix
		}
		kind := packet.IPv6
		if rec.Family == 4 {
			kind = packet.IPv4
		}
		addr := func(a [16]byte) string { return addrString(kind, a) }
		proto := map[uint8]string{6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6"}[rec.Proto]
		if proto == "" {
			proto = fmt.Sprint(rec.Proto)
		}
		msg := fmt.Sprintf("%sIN=%s OUT=%s SRC=%s DST=%s LEN=%d PROTO=%s", prefix, names[rec.In], names[rec.Out],
			addr(rec.Src), addr(rec.Dst), rec.Len, proto)
		if rec.Proto == 6 || rec.Proto == 17 {
			msg += fmt.Sprintf(" SPT=%d DPT=%d", rec.SrcPort, rec.DstPort)
		}
		if rec.Proto == 6 {
			for _, fl := range []struct {
				bit  uint8
				name string
			}{{0x02, "SYN"}, {0x10, "ACK"}, {0x01, "FIN"}, {0x04, "RST"}, {0x08, "PSH"}, {0x20, "URG"}} {
				if rec.TCPFlags&fl.bit != 0 {
					msg += " " + fl.name
				}
			}
		}
		d.log.Info(msg, "log_rule", rule, "state", rec.State.String())
	}
}
