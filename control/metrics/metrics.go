package metrics

import (
	"strconv"
	"strings"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/conntrack/tcpstate"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "dpfw"

// PortStats are one port's counters as the Collector needs them.
type PortStats struct {
	Name                 string
	RxPackets, TxPackets uint64
	RxBytes, TxBytes     uint64
	RxMissed, RxErrors   uint64
	TxErrors, RxNoMbuf   uint64
	LinkUp               bool
}

// RuleStat is one rule's (or chain policy's) counters.
type RuleStat struct {
	Chain, Rule     string // Rule: "1", "2", … or "policy"
	Target, Comment string
	Packets, Bytes  uint64
	// Limited marks a rule with -m limit/-m hashlimit; LimitEvictions
	// counts its buckets reused before they refilled (table too small).
	Limited        bool
	LimitEvictions uint64
}

// Source is what the Collector reads at scrape time. It is implemented by the
// daemon; the functions must be safe to call concurrently with the workers.
type Source struct {
	Workers func() []dataplane.Snapshot
	Ports   func() []PortStats
	// MbufsInUse and MbufsTotal describe the packet pool.
	MbufsInUse func() uint64
	MbufsTotal uint64
	// Conntrack returns each worker's connection-tracking counters.
	Conntrack func() []*dataplane.CTCounters
	// Rules returns per-rule counters of the active rule set.
	Rules func() []RuleStat
}

var (
	workerLabels = []string{"worker"}

	rxPackets  = desc("worker", "rx_packets_total", "Packets received by the worker.", workerLabels)
	rxBytes    = desc("worker", "rx_bytes_total", "Bytes received by the worker.", workerLabels)
	txPackets  = desc("worker", "tx_packets_total", "Packets transmitted by the worker.", workerLabels)
	txBytes    = desc("worker", "tx_bytes_total", "Bytes transmitted by the worker.", workerLabels)
	bursts     = desc("worker", "bursts_total", "Polls that returned at least one packet.", workerLabels)
	emptyPolls = desc("worker", "empty_polls_total", "Polls that returned no packet.", workerLabels)
	busy       = desc("worker", "busy_seconds_total", "Time spent processing non-empty bursts.", workerLabels)
	idle       = desc("worker", "idle_seconds_total", "Time spent on empty polls and idle sleeps.", workerLabels)
	drops      = desc("worker", "dropped_packets_total", "Packets dropped, by reason.", []string{"worker", "reason"})

	portRx      = desc("port", "rx_packets_total", "Packets received by the port (rte_eth_stats.ipackets).", []string{"port"})
	portTx      = desc("port", "tx_packets_total", "Packets transmitted by the port (rte_eth_stats.opackets).", []string{"port"})
	portRxBytes = desc("port", "rx_bytes_total", "Bytes received by the port.", []string{"port"})
	portTxBytes = desc("port", "tx_bytes_total", "Bytes transmitted by the port.", []string{"port"})
	portMissed  = desc("port", "rx_missed_packets_total", "Packets the device dropped because the rx ring was full.", []string{"port"})
	portRxErr   = desc("port", "rx_errors_total", "Erroneous received packets.", []string{"port"})
	portTxErr   = desc("port", "tx_errors_total", "Failed transmissions.", []string{"port"})
	portNoMbuf  = desc("port", "rx_nombuf_total", "Receive failures for lack of an mbuf.", []string{"port"})
	portUp      = desc("port", "link_up", "1 if the port's link is up.", []string{"port"})

	rejects    = desc("worker", "reject_answers_total", "REJECT answers (TCP RST, ICMP unreachable) transmitted.", workerLabels)
	logsLost   = desc("worker", "log_suppressed_total", "LOG records lost to the rate limit or a full queue.", workerLabels)
	steered    = desc("worker", "steered_packets_total", "Packets handed to the worker owning their connection.", workerLabels)
	cacheHits  = desc("worker", "verdict_cache_hits_total", "Packets whose verdict came from their connection's cache (no classification).", workerLabels)
	classified = desc("worker", "classified_packets_total", "Packets that ran the rule set.", workerLabels)
	fragsHeld  = desc("worker", "fragments_held", "Fragments held until their datagram is complete (at most 256 per worker).", workerLabels)

	ctLookups    = desc("conntrack", "lookups_total", "Connection table lookups.", workerLabels)
	ctHits       = desc("conntrack", "lookup_hits_total", "Lookups that found a connection.", workerLabels)
	ctCreated    = desc("conntrack", "created_total", "Connections created.", workerLabels)
	ctExpired    = desc("conntrack", "expired_total", "Connections removed by their timeout.", workerLabels)
	ctEarly      = desc("conntrack", "early_drops_total", "Unassured connections evicted to make room.", workerLabels)
	ctFull       = desc("conntrack", "table_full_drops_total", "New connections dropped: no room even after early drop.", workerLabels)
	ctRate       = desc("conntrack", "new_rate_drops_total", "New connections dropped over conntrack.new_per_second.", workerLabels)
	ctAdaptive   = desc("conntrack", "adaptive_expired_total", "Unassured connections expired early by adaptive timeouts (included in expired).", workerLabels)
	ctInsertFail = desc("conntrack", "insert_failures_total", "Insertions that found no free slot within the displacement bound.", workerLabels)
	ctKicks      = desc("conntrack", "displacements_total", "Keys moved to make room (cuckoo displacements).", workerLabels)
	ctEntries    = desc("conntrack", "entries", "Tracked connections, by protocol.", []string{"worker", "protocol"})
	ctTCP        = desc("conntrack", "tcp_entries", "Tracked TCP connections, by TCP state.", []string{"worker", "state"})
	ctCapacity   = desc("conntrack", "capacity", "Most connections the worker's table holds.", workerLabels)
	ctInvalid    = desc("conntrack", "invalid_packets_total", "Packets in state INVALID, by reason.", []string{"worker", "reason"})

	expCreated = desc("conntrack", "expectations_created_total", "Expected (RELATED) connections announced by FTP control connections.", workerLabels)
	expMatched = desc("conntrack", "expectations_matched_total", "Expectations used by their data connection.", workerLabels)
	expExpired = desc("conntrack", "expectations_expired_total", "Expectations that timed out unused.", workerLabels)
	expPending = desc("conntrack", "expectations", "Expectations waiting for their connection.", workerLabels)
	expRefused = desc("conntrack", "expectations_refused_total", "Announcements that created no expectation, by reason.", []string{"worker", "reason"})
	ftpBad     = desc("conntrack", "ftp_malformed_total", "FTP PORT/EPRT/227/229 lines that nf_conntrack_ftp finds malformed; their segments are dropped (drop reason ftp_malformed), as the kernel drops them.", workerLabels)
	ftpLong    = desc("conntrack", "ftp_line_too_long_total", "FTP control lines longer than the helper's buffer (skipped).", workerLabels)
	evLost     = desc("conntrack", "events_lost_total", "Connection events lost because the worker's event ring was full (dpfw conntrack events fell behind).", workerLabels)

	rulePackets = desc("rule", "packets_total", "Packets decided by a rule or chain policy (like iptables -L -v).", []string{"chain", "rule", "target", "comment"})
	ruleBytes   = desc("rule", "bytes_total", "Bytes (IP) decided by a rule or chain policy.", []string{"chain", "rule", "target", "comment"})
	ruleLimitEv = desc("rule", "limit_evictions_total", "Rate-limit buckets of a -m limit/-m hashlimit rule reused before they refilled (raise --hashlimit-htable-size).", []string{"chain", "rule", "comment"})

	mbufInUse = desc("mempool", "mbufs_in_use", "Mbufs taken from the pool (rings, in flight, lcore caches).", nil)
	mbufTotal = desc("mempool", "mbufs", "Mbufs in the pool.", nil)
)

func desc(sub, name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, sub, name), help, labels, nil)
}

// Collector is a prometheus.Collector over a Source.
type Collector struct{ src Source }

// NewCollector returns a collector reading src.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rejects, logsLost, steered, cacheHits, classified, fragsHeld, ctLookups, ctHits, ctCreated, ctExpired, ctEarly, ctFull, ctRate, ctAdaptive,
		ctInsertFail, ctKicks, ctEntries, ctTCP, ctCapacity, ctInvalid, rulePackets, ruleBytes, ruleLimitEv,
		expCreated, expMatched, expExpired, expPending, expRefused, ftpBad, ftpLong, evLost} {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{rxPackets, rxBytes, txPackets, txBytes, bursts, emptyPolls, busy, idle, drops,
		portRx, portTx, portRxBytes, portTxBytes, portMissed, portRxErr, portTxErr, portNoMbuf, portUp, mbufInUse, mbufTotal} {
		ch <- d
	}
}

// constMetric is prometheus.MustNewConstMetric for label values that may
// come from rule text: the parser refuses invalid UTF-8, and this makes
// sure that no label value can make a scrape fail (NewConstMetric refuses
// invalid UTF-8, and Must would panic the whole scrape).
func constMetric(d *prometheus.Desc, t prometheus.ValueType, v float64, l ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(d, t, v, l...)
	if err == nil {
		return m
	}
	for i := range l {
		l[i] = strings.ToValidUTF8(l[i], "\uFFFD")
	}
	m, err = prometheus.NewConstMetric(d, t, v, l...)
	if err != nil {
		return prometheus.NewInvalidMetric(d, err)
	}
	return m
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Workers != nil {
		for i, s := range c.src.Workers() {
			collectWorker(ch, strconv.Itoa(i), &s)
		}
	}
	if c.src.Conntrack != nil {
		for i, ct := range c.src.Conntrack() {
			collectConntrack(ch, strconv.Itoa(i), ct)
		}
	}
	if c.src.Rules != nil {
		for _, r := range c.src.Rules() {
			counter(ch, rulePackets, r.Packets, r.Chain, r.Rule, r.Target, r.Comment)
			counter(ch, ruleBytes, r.Bytes, r.Chain, r.Rule, r.Target, r.Comment)
			if r.Limited {
				counter(ch, ruleLimitEv, r.LimitEvictions, r.Chain, r.Rule, r.Comment)
			}
		}
	}
	if c.src.Ports != nil {
		for _, p := range c.src.Ports() {
			collectPort(ch, &p)
		}
	}
	if c.src.MbufsInUse != nil {
		ch <- constMetric(mbufInUse, prometheus.GaugeValue, float64(c.src.MbufsInUse()))
		ch <- constMetric(mbufTotal, prometheus.GaugeValue, float64(c.src.MbufsTotal))
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, l ...string) {
	ch <- constMetric(d, prometheus.CounterValue, float64(v), l...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, l ...string) {
	ch <- constMetric(d, prometheus.GaugeValue, float64(v), l...)
}

// workerCounters are the per-worker counters that are one Snapshot field
// each, as data.
var workerCounters = []struct {
	d   *prometheus.Desc
	get func(*dataplane.Snapshot) uint64
}{
	{rxPackets, func(s *dataplane.Snapshot) uint64 { return s.RxPackets }},
	{rxBytes, func(s *dataplane.Snapshot) uint64 { return s.RxBytes }},
	{txPackets, func(s *dataplane.Snapshot) uint64 { return s.TxPackets }},
	{txBytes, func(s *dataplane.Snapshot) uint64 { return s.TxBytes }},
	{bursts, func(s *dataplane.Snapshot) uint64 { return s.Bursts }},
	{emptyPolls, func(s *dataplane.Snapshot) uint64 { return s.EmptyPolls }},
	{cacheHits, func(s *dataplane.Snapshot) uint64 { return s.CacheHits }},
	{rejects, func(s *dataplane.Snapshot) uint64 { return s.RejectsSent }},
	{logsLost, func(s *dataplane.Snapshot) uint64 { return s.LogsSuppressed }},
	{steered, func(s *dataplane.Snapshot) uint64 { return s.Steered }},
	{classified, func(s *dataplane.Snapshot) uint64 { return s.Classified }},
}

func collectWorker(ch chan<- prometheus.Metric, w string, s *dataplane.Snapshot) {
	for _, m := range workerCounters {
		counter(ch, m.d, m.get(s), w)
	}
	gauge(ch, fragsHeld, s.FragmentsHeld, w)
	ch <- constMetric(busy, prometheus.CounterValue, float64(s.BusyNanos)/1e9, w)
	ch <- constMetric(idle, prometheus.CounterValue, float64(s.IdleNanos)/1e9, w)
	for r := filter.DropReason(1); r < filter.NumDropReasons; r++ {
		counter(ch, drops, s.Drops[r], w, r.String())
	}
}

// ctCounters are the per-worker connection-table counters that are one
// field each, as data.
var ctCounters = []struct {
	d   *prometheus.Desc
	get func(*dataplane.CTCounters) *dataplane.Counter
}{
	{ctLookups, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.Lookups }},
	{ctHits, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.Hits }},
	{ctCreated, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.Created }},
	{ctExpired, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.Expired }},
	{ctEarly, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.EarlyDrops }},
	{ctFull, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.TableFullDrops }},
	{ctRate, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.RateLimited }},
	{ctAdaptive, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.AdaptiveExpired }},
	{ctInsertFail, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.InsertFailures }},
	{ctKicks, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.Kicks }},
	{expCreated, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.ExpectCreated }},
	{expMatched, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.ExpectMatched }},
	{expExpired, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.ExpectExpired }},
	{ftpBad, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.FTPMalformed }},
	{ftpLong, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.FTPLineTooLong }},
	{evLost, func(c *dataplane.CTCounters) *dataplane.Counter { return &c.EventsLost }},
}

func collectConntrack(ch chan<- prometheus.Metric, w string, ct *dataplane.CTCounters) {
	for _, m := range ctCounters {
		counter(ch, m.d, m.get(ct).Load(), w)
	}
	gauge(ch, ctCapacity, ct.Capacity.Load(), w)
	for p, name := range conntrack.ProtoClassNames {
		gauge(ch, ctEntries, ct.ByProto[p].Load(), w, name)
	}
	for st := 1; st < tcpstate.NumStates; st++ {
		gauge(ch, ctTCP, ct.TCPByState[st].Load(), w, tcpstate.State(st).String())
	}
	gauge(ch, expPending, ct.ExpectPending.Load(), w)
	for r := range ct.ExpectRefused {
		counter(ch, expRefused, ct.ExpectRefused[r].Load(), w, conntrack.RefusalNames[r])
	}
	for r := conntrack.InvalidReason(1); r < conntrack.NumInvalidReasons; r++ {
		if r == conntrack.InvalidTCP {
			continue
		}
		counter(ch, ctInvalid, ct.Invalid[r].Load(), w, r.String())
	}
}

func collectPort(ch chan<- prometheus.Metric, p *PortStats) {
	counter(ch, portRx, p.RxPackets, p.Name)
	counter(ch, portTx, p.TxPackets, p.Name)
	counter(ch, portRxBytes, p.RxBytes, p.Name)
	counter(ch, portTxBytes, p.TxBytes, p.Name)
	counter(ch, portMissed, p.RxMissed, p.Name)
	counter(ch, portRxErr, p.RxErrors, p.Name)
	counter(ch, portTxErr, p.TxErrors, p.Name)
	counter(ch, portNoMbuf, p.RxNoMbuf, p.Name)
	up := 0.0
	if p.LinkUp {
		up = 1
	}
	ch <- constMetric(portUp, prometheus.GaugeValue, up, p.Name)
}
