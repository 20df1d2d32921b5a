package metrics

import (
	"reflect"
	"strconv"
	"strings"

	"github.com/dpfw/dpfw/dataplane"
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
	// LinkUnknown is set when the device cannot know its link: a net_tap
	// whose interface was moved out of dpfw's network namespace (DPDK
	// looks for it by name in dpfw's). No link_up sample is exported then.
	LinkUnknown bool
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
	Conntrack func() []dataplane.CTSnapshot
	// Rules returns per-rule counters of the active rule set.
	Rules func() []RuleStat
	// MaxRuleSeries bounds the rules exported (0: all; see
	// config.Metrics.RuleSeries).
	MaxRuleSeries int
}

var (
	portRx      = desc("port", "rx_packets_total", "Packets received by the port (rte_eth_stats.ipackets).", []string{"port"})
	portTx      = desc("port", "tx_packets_total", "Packets transmitted by the port (rte_eth_stats.opackets).", []string{"port"})
	portRxBytes = desc("port", "rx_bytes_total", "Bytes received by the port.", []string{"port"})
	portTxBytes = desc("port", "tx_bytes_total", "Bytes transmitted by the port.", []string{"port"})
	portMissed  = desc("port", "rx_missed_packets_total", "Packets the device dropped because the rx ring was full.", []string{"port"})
	portRxErr   = desc("port", "rx_errors_total", "Erroneous received packets.", []string{"port"})
	portTxErr   = desc("port", "tx_errors_total", "Failed transmissions.", []string{"port"})
	portNoMbuf  = desc("port", "rx_nombuf_total", "Receive failures for lack of an mbuf.", []string{"port"})
	portUp      = desc("port", "link_up", "1 if the port's link is up (not exported for a net_tap whose interface left dpfw's network namespace: DPDK cannot see it).", []string{"port"})

	rulePackets = desc("rule", "packets_total", "Packets decided by a rule or chain policy (like iptables -L -v).", []string{"chain", "rule", "target", "comment"})
	ruleBytes   = desc("rule", "bytes_total", "Bytes (IP) decided by a rule or chain policy.", []string{"chain", "rule", "target", "comment"})
	ruleLimitEv = desc("rule", "limit_evictions_total", "Rate-limit buckets of a -m limit/-m hashlimit rule reused before they refilled (raise --hashlimit-htable-size).", []string{"chain", "rule", "comment"})

	ruleOmitted = desc("rule", "series_omitted", "Rules whose counters are not exported, past metrics.rule_series (they have counted nothing, or are past the bound).", nil)

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
	for _, fams := range [][]statFamily{workerStats, ctStats} {
		for _, f := range fams {
			ch <- f.desc
		}
	}
	for _, d := range []*prometheus.Desc{rulePackets, ruleBytes, ruleLimitEv, ruleOmitted,
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
			collectStats(ch, workerStats, reflect.ValueOf(&s).Elem(), strconv.Itoa(i))
		}
	}
	if c.src.Conntrack != nil {
		for i, ct := range c.src.Conntrack() {
			collectStats(ch, ctStats, reflect.ValueOf(&ct).Elem(), strconv.Itoa(i))
		}
	}
	if c.src.Rules != nil {
		rs, omitted := boundRules(c.src.Rules(), c.src.MaxRuleSeries)
		gauge(ch, ruleOmitted, uint64(omitted))
		for _, r := range rs {
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

// boundRules keeps at most max of rs (0: all): the chain policies, then
// the rules that have counted packets, in order. It returns how many it
// left out.
func boundRules(rs []RuleStat, max int) ([]RuleStat, int) {
	if max <= 0 || len(rs) <= max {
		return rs, 0
	}
	out := make([]RuleStat, 0, max)
	for _, r := range rs {
		if r.Rule == "policy" {
			out = append(out, r)
		}
	}
	for _, r := range rs {
		if len(out) == max {
			break
		}
		if r.Rule != "policy" && r.Packets > 0 {
			out = append(out, r)
		}
	}
	return out, len(rs) - len(out)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, l ...string) {
	ch <- constMetric(d, prometheus.CounterValue, float64(v), l...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, l ...string) {
	ch <- constMetric(d, prometheus.GaugeValue, float64(v), l...)
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
	if p.LinkUnknown {
		return
	}
	up := 0.0
	if p.LinkUp {
		up = 1
	}
	ch <- constMetric(portUp, prometheus.GaugeValue, up, p.Name)
}
