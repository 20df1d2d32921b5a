package main

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// TestPcapHostile replays the hostile capture (malformed headers, bad
// lengths, tiny and overlapping fragments, bad checksums, impossible TCP
// flags, ICMP errors quoting unknown flows) through net_pcap: every hostile
// frame is dropped and counted under its reason, the allowed traffic
// interleaved with it comes out byte for byte and in order, and the packet
// accounting balances with no mbuf lost.
func TestPcapHostile(t *testing.T) {
	requireDPDK(t)
	var in, want [][]byte
	reasons := map[string]int{}
	for _, h := range pcapgen.Hostile() {
		in = append(in, h.Frame)
		if h.Reason == "" {
			want = append(want, h.Frame)
		} else {
			reasons[h.Reason]++
		}
	}
	p := startPcap(t, in, withRules(pcapgen.HostileRules))
	p.waitReceived()
	p.waitMetric("dpfw_worker_dropped_packets_total", "", float64(len(in)-len(want)), 2*time.Second)
	for reason, n := range reasons {
		if got := p.metric("dpfw_worker_dropped_packets_total", `reason="`+reason+`"`); got != float64(n) {
			t.Errorf("drops for %s: %v; want %d", reason, got, n)
		}
	}
	if got := p.metric("dpfw_worker_dropped_packets_total"); got != float64(len(in)-len(want)) {
		t.Errorf("total drops %v; want %d", got, len(in)-len(want))
	}
	// Only the allowed flows are tracked: 3 TCP (one a SYN in a tiny
	// first fragment and the rest), 2 UDP/IPv4 (one of them fragmented), 1
	// ping, 1 UDP/IPv6. No hostile frame left an entry.
	if got := p.metric("dpfw_conntrack_entries"); got != 7 {
		t.Errorf("%v tracked connections; want the 7 allowed flows", got)
	}
	sameFrames(t, p.forwarded(), want)
}

// TestPcapSYNFlood replays a SYN flood from 65,536 distinct sources with an
// established connection's packets interleaved, forever (infinite_rx), into
// a 4,096-entry table: the table stays at its bound (early drop evicts
// half-open entries), not one packet of the established connection is
// lost, and the accounting balances. With a NEW rate cap, the flood is cut
// to the cap and the established connection is still untouched.
func TestPcapSYNFlood(t *testing.T) {
	requireDPDK(t)
	dir := t.TempDir()
	frames, est := pcapgen.SYNFlood(65536, 64)
	in := filepath.Join(dir, "flood.pcap")
	if err := pcapgen.Write(in, frames); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name           string
		perSecond, cap int
	}{
		{"early_drop", 0, 0},
		{"new_rate_cap", 2000, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// dpfw forwards from before startDPFW returns: the cap's
			// budget counts from before it was launched.
			launched := time.Now()
			cfg := e2e.Base()
			cfg.EAL.MemoryMB = 512
			cfg.Mempool.Mbufs, cfg.Mempool.DataRoom = len(frames)+16384, 512
			cfg.Ports = []config.Port{{Name: "a", Device: "net_pcap0,rx_pcap=" + in + ",infinite_rx=1"}, {Name: "b", Device: "net_null0,no-rx=1"}}
			cfg.Links = []config.Link{{Name: "wire", Ports: []string{"a", "b"}}}
			cfg.Workers.IdlePolls = 0 // busy-poll: the flood never pauses
			cfg.Conntrack.Capacity = 4096
			if tt.perSecond > 0 {
				cfg.Conntrack.NewPerSecond, cfg.Conntrack.NewBurst = tt.perSecond, tt.cap
			}
			e2e.Iptables(&cfg, pcapgen.FloodRules, "")
			p := startDPFW(t, cfg)
			start := time.Now()
			maxEntries := 0.0
			for time.Since(start) < 4*time.Second {
				maxEntries = max(maxEntries, p.metric("dpfw_conntrack_entries"))
				time.Sleep(100 * time.Millisecond)
			}
			rx := p.metric("dpfw_worker_rx_packets_total")
			loops := rx / float64(len(frames))
			estOK := p.metric("dpfw_rule_packets_total", `comment="est"`)
			lost := p.metric("dpfw_rule_packets_total", `comment="est-lost"`)
			flood := p.metric("dpfw_rule_packets_total", `comment="flood"`)
			created := p.metric("dpfw_conntrack_created_total")
			early := p.metric("dpfw_conntrack_early_drops_total")
			limited := p.metric("dpfw_worker_dropped_packets_total", `reason="ct_new_rate"`)
			t.Logf("%.1f passes over %d frames (%.2f Mpps); established flow: %v accepted, %v lost; flood SYNs accepted %v; early drops %v; ct_new_rate drops %v; max entries %v",
				loops, len(frames), rx/4e6, estOK, lost, flood, early, limited, maxEntries)
			if loops < 1 {
				t.Fatalf("dpfw did not get through the capture once in 4 s (%v packets)", rx)
			}
			if lost != 0 {
				t.Errorf("%v packets of the established connection were dropped", lost)
			}
			if want := float64(est) * (loops - 1); estOK < want {
				t.Errorf("established packets accepted %v; want at least %v (%d per pass)", estOK, want, est)
			}
			if maxEntries > 4096 {
				t.Errorf("the table held %v entries; its bound is 4096", maxEntries)
			}
			if tt.name == "early_drop" && early < rx/2-float64(est)*loops {
				// Every flood SYN past the first 4096 evicts a half-open entry.
				t.Errorf("early drops %v; want about one per flood SYN", early)
			}
			if tt.name == "new_rate_cap" {
				// SYNs retransmitted into the half-open entries that exist
				// are not new connections; created ones obey the cap.
				if budget := 2000*time.Since(launched).Seconds() + 100; created > budget {
					t.Errorf("%v connections created; the cap allows %v", created, budget)
				}
				if limited == 0 {
					t.Error("no ct_new_rate drops under the cap")
				}
			}
			p.stop()
		})
	}
}

// TestPcapHashlimit: a per-source SYN limit (-m hashlimit, 10/s, burst 5)
// through the data plane: each of two sources replaying 200 SYNs gets about
// its burst through; the rest are dropped by the limit rule, and every
// packet is accounted for.
func TestPcapHashlimit(t *testing.T) {
	requireDPDK(t)
	var frames [][]byte
	for i := 0; i < 200; i++ {
		for _, src := range []int{1, 2} {
			frames = append(frames, pcapgen.TCP4(pcapgen.ClientIP(src), pcapgen.ServerIP(1), uint16(10000+i), 22, "S", 1, 0, 0))
		}
	}
	start := time.Now()
	p := startPcap(t, frames, withRules(`-A FORWARD -p tcp --syn -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 10/sec --hashlimit-burst 5 --hashlimit-mode srcip --hashlimit-name ssh -m comment --comment limit -j DROP
-A FORWARD -m comment --comment pass -j ACCEPT
`))
	p.waitReceived()
	// The replay took less than this: at most the burst plus what 10/s
	// refills meanwhile may pass.
	slack := 1 + int(time.Since(start).Seconds()*10)
	limited := p.metric("dpfw_rule_packets_total", `comment="limit"`)
	got := p.forwarded()
	if int(limited)+len(got) != len(frames) {
		t.Errorf("%v dropped by the limit + %d passed != %d sent", limited, len(got), len(frames))
	}
	perSource := map[string]int{}
	for _, f := range got {
		perSource[fmt.Sprint(f[26:30])]++
	}
	for src, n := range perSource {
		if n < 5 || n > 5+slack {
			t.Errorf("source %v: %d SYNs passed; want the burst of 5 (+%d refill at most)", src, n, slack)
		}
	}
	if len(perSource) != 2 {
		t.Errorf("SYNs passed from %d sources; want 2", len(perSource))
	}
}
