package main

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/hasync"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

// The cost of state sync: dpfw forwarding a mix of established UDP flows
// and short TCP connections (churnmix), alternately without sync and with
// it, to a peer that is an FTFW node in this process (it acknowledges, as
// a dpfw or conntrackd peer would). Reported: the forwarding rate's
// change, the connections per second, and the sync traffic per
// connection.

// The sync run's settings, read by perfConfig and runDPFW.
var (
	syncMode            string    // "": off
	syncLocal, syncPeer string    // dpfw's address, the peer's
	windowMetrics       []string  // metrics runDPFW reports the change of over its window
	lastDeltas          []float64 // their changes, in windowMetrics' order
	syncPeerNode        *hasync.Node
)

// churnMix is n short TCP connections (pcapgen.TCPChurn: 8 frames each),
// each after filler frames of established UDP flows (both ways), so that
// about one frame in filler+8 opens a connection.
func churnMix(n, filler int) [][]byte {
	churn, flows := pcapgen.TCPChurn(n), pcapgen.UDPFlows(4096, true)
	out := make([][]byte, 0, n*(8+filler))
	for i := range n {
		for j := range filler {
			out = append(out, flows[(i*filler+j)%len(flows)])
		}
		out = append(out, churn[8*i:8*i+8]...)
	}
	return out
}

// syncConfig turns the sync on in a perf run's config, when asked.
func syncConfig(cfg *config.Config) {
	if syncMode == "" {
		return
	}
	cfg.Sync.Mode, cfg.Sync.Local, cfg.Sync.Peer = syncMode, syncLocal, syncPeer
}

// startSyncPeer starts the peer node on loopback and picks dpfw's address.
func startSyncPeer(mode string) {
	free := func() netip.AddrPort {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		check(err)
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	local, peer := free(), free()
	n, err := hasync.New(hasync.Config{Mode: mode, Local: peer, Peer: local, MaxEntries: 1 << 22})
	check(err)
	go n.Receive()
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			n.Tick()
		}
	}()
	syncPeerNode, syncLocal, syncPeer = n, local.String(), peer.String()
}

// syncLoad runs dpfw without and with the sync, o.rounds times each, and
// prints the medians.
// perConn is the workload's frames per connection.
func (o *runOpts) syncLoad(name string, dpfwRun func() float64, perConn int) {
	if o.syncMode == "" {
		return
	}
	if syncPeerNode == nil {
		startSyncPeer(o.syncMode)
	}
	windowMetrics = []string{"dpfw_port_tx_packets_total", "dpfw_sync_bytes_sent_total", "dpfw_sync_messages_sent_total",
		"dpfw_sync_events_lost_total", "dpfw_sync_dumps_sent_total"}
	defer func() { windowMetrics = nil }()
	var changes, rates, bytesPerConn, msgsPerConn []float64
	var lost, dumps float64
	for r := 0; r < o.rounds; r++ {
		quiet := dpfwRun()
		syncMode = o.syncMode
		synced := dpfwRun()
		syncMode = ""
		d := lastDeltas
		d[0] /= float64(max(perConn, 1)) // frames forwarded → connections
		conns := synced * 1e6 / float64(max(perConn, 1))
		changes, rates = append(changes, synced/quiet-1), append(rates, conns)
		if d[0] > 0 {
			bytesPerConn, msgsPerConn = append(bytesPerConn, d[1]/d[0]), append(msgsPerConn, d[2]/d[0])
		}
		lost, dumps = lost+d[3], dumps+d[4]
		fmt.Printf("%-22s sync %s round %d: %.2f Mpps without, %.2f with (%+.1f%%); %.0f connections/s, %.1f bytes and %.1f messages of sync per connection\n",
			name, o.syncMode, r+1, quiet, synced, 100*(synced/quiet-1), conns, d[1]/max(d[0], 1), d[2]/max(d[0], 1))
	}
	fmt.Printf("%-22s sync %s: median change %+.1f%% at %.0f new connections/s; %.1f bytes (%.1f messages) per connection; %.0f events lost, %.0f dumps\n",
		name, o.syncMode, 100*median(changes), median(rates), median(bytesPerConn), median(msgsPerConn), lost, dumps)
}

// windowStart and windowEnd take windowMetrics' values around runDPFW's
// measurement window.
func windowStart(p *e2e.Proc) []float64 {
	v := make([]float64, len(windowMetrics))
	for i, m := range windowMetrics {
		v[i], _ = p.Metric(m)
	}
	return v
}

func windowEnd(p *e2e.Proc, start []float64) {
	lastDeltas = make([]float64, len(windowMetrics))
	for i, m := range windowMetrics {
		v, _ := p.Metric(m)
		lastDeltas[i] = v - start[i]
	}
}
