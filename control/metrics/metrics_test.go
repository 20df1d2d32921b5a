package metrics_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/metrics"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

func source() metrics.Source {
	return metrics.Source{
		Workers: func() []dataplane.Snapshot {
			s := dataplane.Snapshot{RxPackets: 10, TxPackets: 9}
			s.Drops[1] = 1
			return []dataplane.Snapshot{s}
		},
		Ports: func() []metrics.PortStats {
			return []metrics.PortStats{{Name: "outside", RxPackets: 10, LinkUp: true}}
		},
		MbufsInUse: func() uint64 { return 42 },
		MbufsTotal: 1023,
		Conntrack:  func() []dataplane.CTSnapshot { return []dataplane.CTSnapshot{{}} },
		Rules: func() []metrics.RuleStat {
			return []metrics.RuleStat{{Chain: "INPUT", Rule: "1", Target: "ACCEPT", Packets: 3, Bytes: 180}, {Chain: "INPUT", Rule: "2", Target: "DROP", Limited: true, LimitEvictions: 4}, {Chain: "INPUT", Rule: "policy", Target: "DROP"}}
		},
	}
}

// TestMetricNaming runs promlint over every metric the collector exports.
func TestMetricNaming(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(source()))
	problems, err := promlint.NewWithMetricFamilies(mustGather(t, reg)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

func TestCollectValues(t *testing.T) {
	c := metrics.NewCollector(source())
	want := `
# HELP dpfw_worker_rx_packets_total Packets received by the worker.
# TYPE dpfw_worker_rx_packets_total counter
dpfw_worker_rx_packets_total{worker="0"} 10
# HELP dpfw_port_link_up 1 if the port's link is up (not exported for a net_tap whose interface left dpfw's network namespace: DPDK cannot see it).
# TYPE dpfw_port_link_up gauge
dpfw_port_link_up{port="outside"} 1
# HELP dpfw_rule_limit_evictions_total Rate-limit buckets of a -m limit/-m hashlimit rule reused before they refilled (raise --hashlimit-htable-size).
# TYPE dpfw_rule_limit_evictions_total counter
dpfw_rule_limit_evictions_total{chain="INPUT",comment="",rule="2"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "dpfw_worker_rx_packets_total", "dpfw_port_link_up", "dpfw_rule_limit_evictions_total"); err != nil {
		t.Error(err)
	}
}

func mustGather(t *testing.T, g prometheus.Gatherer) []*dto.MetricFamily {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// BenchmarkScrape is one /metrics gather of two workers' counters, the
// ports and 100 rules through the registry (what a scrape costs dpfw,
// serialisation aside).
func BenchmarkScrape(b *testing.B) {
	src := source()
	src.Workers = func() []dataplane.Snapshot { return make([]dataplane.Snapshot, 2) }
	src.Conntrack = func() []dataplane.CTSnapshot { return make([]dataplane.CTSnapshot, 2) }
	rules := make([]metrics.RuleStat, 100)
	for i := range rules {
		rules[i] = metrics.RuleStat{Chain: "INPUT", Rule: fmt.Sprint(i + 1), Target: "ACCEPT"}
	}
	src.Rules = func() []metrics.RuleStat { return rules }
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(src))
	n := 0
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		n = 0
		for _, mf := range mfs {
			n += len(mf.Metric)
		}
	}
	b.ReportMetric(float64(n), "samples")
}
