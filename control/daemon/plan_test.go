package daemon

import (
	"fmt"
	"testing"

	"github.com/dpfw/dpfw/control/config"
)

// TestPlanWorkers: which worker polls what, and when workers steer, from
// the configuration and what the ports report, without DPDK.
func TestPlanWorkers(t *testing.T) {
	linked := []PortFacts{{RSS: true, Peer: 1}, {RSS: true, Peer: 0}}
	noRSS := []PortFacts{{RSS: false, Peer: 1}, {RSS: false, Peer: 0}}
	unrouted := []PortFacts{{RSS: true, Peer: 1}, {RSS: true, Peer: 0}, {RSS: true, Peer: -1}}
	for _, tc := range []struct {
		name     string
		cpus     []int
		steering string
		ports    []PortFacts
		steer    bool
		want     string // worker 0's sources: port/queue→peer, r for a ring
	}{
		{"one worker never steers", []int{1}, "on", noRSS, false, "0/0→1 1/0→0"},
		{"RSS: no steering", []int{1, 2}, "auto", linked, false, "0/0→1 1/0→0"},
		{"no RSS: auto steers", []int{1, 2}, "auto", noRSS, true, "0/0→1 0/0→1r 1/0→0 1/0→0r"},
		{"steering on", []int{1, 2}, "on", linked, true, "0/0→1 0/0→1r 1/0→0 1/0→0r"},
		{"steering off without RSS", []int{1, 2}, "off", noRSS, false, "0/0→1 1/0→0"},
		{"a port in no link", []int{1}, "auto", unrouted, false, "0/0→1 1/0→0 2/0→-1"},
	} {
		cfg := &config.Config{}
		cfg.Workers.CPUs, cfg.Workers.Steering = tc.cpus, tc.steering
		p := PlanWorkers(cfg, tc.ports)
		if p.Steer != tc.steer || len(p.Queues) != len(tc.cpus) {
			t.Errorf("%s: steer %v, %d workers; want %v, %d", tc.name, p.Steer, len(p.Queues), tc.steer, len(tc.cpus))
			continue
		}
		if got := sources(p.Queues[0]); got != tc.want {
			t.Errorf("%s: worker 0 polls %q; want %q", tc.name, got, tc.want)
		}
		for w, qs := range p.Queues {
			for _, q := range qs {
				if int(q.Queue) != w {
					t.Errorf("%s: worker %d polls queue %d of port %d; each worker owns its own queue", tc.name, w, q.Queue, q.Port)
				}
			}
		}
	}
}

func sources(qs []QueuePlan) string {
	s := ""
	for i, q := range qs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%d/%d→%d", q.Port, q.Queue, q.Peer)
		if q.Ring {
			s += "r"
		}
	}
	return s
}
