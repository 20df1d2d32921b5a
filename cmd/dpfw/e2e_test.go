package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// goldenFrames returns a mix of frames that a pass-through dpfw forwards
// unchanged, and malformed frames it must drop, with their drop reasons.
func goldenFrames() (pass [][]byte, bad map[string][]byte) {
	c, s := pcapgen.ClientIP(1), pcapgen.ServerIP(1)
	eth := func(t layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: pcapgen.ClientMAC, DstMAC: pcapgen.ServerMAC, EthernetType: t}
	}
	ip4 := func(p layers.IPProtocol) *layers.IPv4 {
		return &layers.IPv4{Version: 4, TTL: 64, Protocol: p, SrcIP: c, DstIP: s}
	}
	c6, s6 := net.ParseIP("2001:db8::1"), net.ParseIP("2001:db8::2")
	pass = [][]byte{
		pcapgen.UDP4(pcapgen.ClientMAC, pcapgen.ServerMAC, c, s, 40000, 53, 32),
		pcapgen.Frame(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP),
			&layers.TCP{SrcPort: 40001, DstPort: 22, Seq: 1, SYN: true, Window: 64240}),
		pcapgen.Frame(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolICMPv4),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload([]byte("ping"))),
		pcapgen.Frame(eth(layers.EthernetTypeIPv6),
			&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: c6, DstIP: s6},
			&layers.UDP{SrcPort: 5353, DstPort: 5353}, gopacket.Payload([]byte("v6"))),
		pcapgen.Frame(eth(layers.EthernetTypeARP), &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: pcapgen.ClientMAC, SourceProtAddress: c,
			DstHwAddress: make([]byte, 6), DstProtAddress: s}),
		pcapgen.Frame(eth(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4},
			ip4(layers.IPProtocolUDP), &layers.UDP{SrcPort: 1, DstPort: 2}, gopacket.Payload([]byte("vlan"))),
	}
	tcp := pcapgen.Frame(eth(layers.EthernetTypeIPv4), ip4(layers.IPProtocolTCP), &layers.TCP{SrcPort: 1, DstPort: 2, ACK: true})
	badOffset := append([]byte(nil), tcp...)
	badOffset[14+20+12] = 0x30 // TCP data offset 3
	badLen := append([]byte(nil), tcp...)
	badLen[14+3] = 0xff // IPv4 total length past the frame
	// An IPv6 first fragment with 8 bytes of its TCP header: RFC 8200
	// §4.5 has it discarded (IPv4 allows it: it is judged reassembled).
	tiny := pcapgen.Frame(eth(layers.EthernetTypeIPv6),
		&layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, SrcIP: c6, DstIP: s6},
		gopacket.Payload(append([]byte{6, 0, 0, 1, 0, 0, 0, 42}, make([]byte, 8)...)))
	bad = map[string][]byte{"bad_tcp_offset": badOffset, "bad_ipv4_header": badLen, "tiny_fragment": tiny}
	return pass, bad
}

// TestPcapGolden replays a capture through net_pcap: every valid frame comes
// out of the paired port byte for byte and in order; malformed ones are
// dropped with their reason counted; no mbuf leaks.
func TestPcapGolden(t *testing.T) {
	requireDPDK(t)
	pass, bad := goldenFrames()
	// The malformed frames are interleaved with valid ones.
	in := append([][]byte(nil), pass...)
	in = append(in, bad["bad_tcp_offset"], pass[0], bad["bad_ipv4_header"], pass[1], bad["tiny_fragment"])
	want := append(append([][]byte(nil), pass...), pass[0], pass[1])
	p := startPcap(t, in, nil)
	p.waitReceived()
	for reason := range bad {
		if got := p.waitMetric("dpfw_worker_dropped_packets_total", `reason="`+reason+`"`, 1, 2*time.Second); got != 1 {
			t.Errorf("drops for %s: got %v; want 1", reason, got)
		}
	}
	if got := p.metric("dpfw_worker_dropped_packets_total"); got != float64(len(bad)) {
		t.Errorf("total drops: got %v; want %d", got, len(bad))
	}
	sameFrames(t, p.forwarded(), want)
}

// netns is a network namespace the test created, deleted at cleanup.
type netns = e2e.Netns

func newNetns(t *testing.T, name string) netns {
	t.Helper()
	n, err := e2e.NewNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Delete)
	return n
}

// adopt moves iface into n and gives it addr (CIDR).
func adopt(t *testing.T, n netns, iface, addr string) {
	t.Helper()
	if err := n.Adopt(iface, addr); err != nil {
		t.Fatal(err)
	}
}

// tapPair starts dpfw with two net_tap ports (e2e.Base with change, nil
// for none: without rules it forwards everything) and puts their
// interfaces in a client namespace (198.18.0.1/24) and a server namespace
// (198.18.0.2/24).
func tapPair(t *testing.T, change func(*config.Config)) (*proc, netns, netns) {
	t.Helper()
	return tapPairWorkers(t, change, []int{1})
}

// tapNames are the kernel interfaces of tapPair's outside and inside ports.
func tapNames() (outside, inside string) {
	id := os.Getpid() % 100000
	return fmt.Sprintf("dt%do", id), fmt.Sprintf("dt%di", id)
}

// tapPairWorkers is tapPair with workers on cpus.
func tapPairWorkers(t *testing.T, change func(*config.Config), cpus []int) (*proc, netns, netns) {
	t.Helper()
	id := os.Getpid() % 100000
	ci, si := tapNames()
	cfg := e2e.Base()
	e2e.TapPair(&cfg, ci, si)
	cfg.Workers.CPUs = cpus
	if change != nil {
		change(&cfg)
	}
	p := startDPFW(t, cfg)
	cns, sns := newNetns(t, fmt.Sprintf("dpfwt-c%d", id)), newNetns(t, fmt.Sprintf("dpfwt-s%d", id))
	adopt(t, cns, ci, "198.18.0.1/24")
	adopt(t, sns, si, "198.18.0.2/24")
	return p, cns, sns
}

// TestTapEndToEnd sends real Linux traffic through dpfw: ping, and a 10 MB
// TCP transfer whose sha256 must match on the other side.
func TestTapEndToEnd(t *testing.T) {
	requireDPDK(t)
	p, cns, sns := tapPair(t, nil)
	out, err := cns.Command("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 received") {
		t.Fatalf("ping through dpfw: %v\n%s", err, out)
	}

	srv := sns.Command(os.Args[0])
	srv.Env = append(os.Environ(), "DPFW_E2E_HELPER=tcp-server", "DPFW_E2E_ADDR=198.18.0.2:5001")
	var srvOut bytes.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	for i := 0; i < 100 && !strings.Contains(srvOut.String(), "listening"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	cli := cns.Command(os.Args[0])
	cli.Env = append(os.Environ(), "DPFW_E2E_HELPER=tcp-client", "DPFW_E2E_ADDR=198.18.0.2:5001")
	got, err := cli.CombinedOutput()
	if err != nil {
		t.Fatalf("TCP client: %v\n%s\nserver: %s", err, got, srvOut.String())
	}
	if want := expectedDigest(); strings.TrimSpace(string(got)) != want {
		t.Fatalf("TCP transfer through dpfw: got %q; want %q", strings.TrimSpace(string(got)), want)
	}
	if rx := p.metric("dpfw_worker_rx_packets_total"); rx < 1000 {
		t.Errorf("dpfw counted %v packets for a 10 MB transfer; want more than 1000", rx)
	}
	p.stop()
}

// establishedRules drop everything but what is ESTABLISHED or RELATED;
// the tests' rule sets add what may open connections.
const establishedRules = `-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
`

// statefulRules: the tutorial's policy for the test hosts: the inside
// (server, 198.18.0.2) accepts NEW TCP 5001 and ping only from the client
// 198.18.0.1; replies flow back as ESTABLISHED; the inside may open nothing.
const statefulRules = establishedRules + `-A INPUT -p tcp --dport 5001 -s 198.18.0.1 -m state --state NEW -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -m state --state NEW -j ACCEPT
`

// background starts cmd with its output collected; its exit comes on the
// channel. It is killed at cleanup if still running.
func background(t *testing.T, cmd *exec.Cmd) (<-chan error, *e2e.Buffer) {
	t.Helper()
	out := new(e2e.Buffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return done, out
}

// startIperf runs an iperf3 server in sns (198.18.0.2) for one test and a
// client in cns sending to it for secs seconds.
func startIperf(t *testing.T, cns, sns netns, secs int) (*exec.Cmd, <-chan error, *e2e.Buffer) {
	t.Helper()
	srv := sns.Command("iperf3", "-s", "-1", "-B", "198.18.0.2")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	time.Sleep(500 * time.Millisecond)
	cli := cns.Command("iperf3", "-c", "198.18.0.2", "-t", fmt.Sprint(secs), "--connect-timeout", "3000")
	done, out := background(t, cli)
	return cli, done, out
}

// startHelper runs the TCP server helper in ns on addr.
func startHelper(t *testing.T, ns netns, addr string) { startHelperMode(t, ns, "tcp-server", addr) }

// startHelperMode runs a helper (DPFW_E2E_HELPER=mode) in ns on addr,
// with env's further variables, and waits until it listens.
func startHelperMode(t *testing.T, ns netns, mode, addr string, env ...string) {
	t.Helper()
	srv := ns.Command(os.Args[0])
	srv.Env = append(append(os.Environ(), "DPFW_E2E_HELPER="+mode, "DPFW_E2E_ADDR="+addr), env...)
	var out e2e.Buffer
	srv.Stdout, srv.Stderr = &out, &out
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	for i := 0; i < 100 && !strings.Contains(out.String(), "listening"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// fetch runs the TCP client helper in ns against addr.
func fetch(ns netns, addr string) (string, error) { return fetchTimeout(ns, addr, 5*time.Second) }

// fetchTimeout is fetch with a dial timeout (short for connections that
// must fail).
func fetchTimeout(ns netns, addr string, d time.Duration) (string, error) {
	cli := ns.Command(os.Args[0])
	cli.Env = append(os.Environ(), "DPFW_E2E_HELPER=tcp-client", "DPFW_E2E_ADDR="+addr, "DPFW_E2E_DIAL_TIMEOUT="+d.String())
	out, err := cli.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestTapStateful: the tutorial's semantics with real Linux traffic. NEW
// connections from the client to the allowed port work and their replies
// come back; a connection opened from the protected side to the client is
// dropped; counters account for it.
func TestTapStateful(t *testing.T) {
	requireDPDK(t)
	for _, cpus := range [][]int{{1}, {0, 1}} {
		t.Run(fmt.Sprint("workers_", cpus), func(t *testing.T) { testTapStateful(t, cpus) })
	}
}

func testTapStateful(t *testing.T, cpus []int) {
	p, cns, sns := tapPairWorkers(t, withRules(statefulRules), cpus)
	if out, err := cns.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping from the client (NEW echo allowed): %v\n%s\n%s", err, out, p.dump())
	}
	// A 3000-byte echo is fragmented by the kernel: the later fragments
	// follow their first fragment's verdict.
	if out, err := cns.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "-s", "3000", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("fragmented ping: %v\n%s\n%s", err, out, p.dump())
	}
	startHelper(t, sns, "198.18.0.2:5001")
	got, err := fetch(cns, "198.18.0.2:5001")
	if err != nil || got != expectedDigest() {
		t.Fatalf("allowed TCP connection through dpfw: %v %q; want %q", err, got, expectedDigest())
	}
	// The protected side opens a connection to the client: no rule allows
	// NEW in OUTPUT, so the SYN is dropped and the dial times out.
	startHelper(t, cns, "198.18.0.1:5002")
	if out, err := fetchTimeout(sns, "198.18.0.1:5002", time.Second); err == nil {
		t.Fatalf("a connection from the protected side went through: %s", out)
	}
	// A port the rules do not open, from the client.
	startHelper(t, sns, "198.18.0.2:5003")
	if out, err := fetchTimeout(cns, "198.18.0.2:5003", time.Second); err == nil {
		t.Fatalf("a connection to a closed port went through: %s", out)
	}
	if drops := p.metric("dpfw_worker_dropped_packets_total", `reason="rule"`); drops < 2 {
		t.Errorf("rule drops: %v; want at least the two refused SYNs", drops)
	}
	// 10 MB from the server: some 7,000 segments leave the inside as
	// ESTABLISHED (OUTPUT rule 1); the client's ACKs (fewer, delayed ACKs
	// vary) enter through INPUT rule 1.
	if est := p.metric("dpfw_rule_packets_total", `chain="OUTPUT"`, `rule="1"`); est < 3000 {
		t.Errorf("packets accepted as ESTABLISHED by OUTPUT rule 1: %v; want the transfer's data segments", est)
	}
	if est := p.metric("dpfw_rule_packets_total", `chain="INPUT"`, `rule="1"`); est < 100 {
		t.Errorf("packets accepted as ESTABLISHED by INPUT rule 1: %v; want the transfer's ACKs", est)
	}
	if created := p.metric("dpfw_conntrack_created_total"); created < 3 {
		t.Errorf("connections created: %v; want at least 3", created)
	}
	if hits := p.metric("dpfw_worker_verdict_cache_hits_total"); hits < 3000 {
		t.Errorf("verdict cache hits: %v; want most packets of the transfer", hits)
	}
	p.stop()
}

// TestTapOperations drives the runtime API and hot reload the way an
// operator would, while traffic flows.
func TestTapOperations(t *testing.T) {
	requireDPDK(t)
	p, cns, sns := tapPair(t, withRules(statefulRules))
	ping := func() error {
		return cns.Command("ping", "-c", "1", "-W", "1", "198.18.0.2").Run()
	}
	if err := ping(); err != nil {
		t.Fatalf("ping before any reload: %v", err)
	}
	startHelper(t, sns, "198.18.0.2:5001")
	if got, err := fetch(cns, "198.18.0.2:5001"); err != nil || got != expectedDigest() {
		t.Fatalf("transfer: %v %q", err, got)
	}

	out, err := p.cli("conntrack", "list", "-p", "tcp", "--dport", "5001")
	if err != nil || !strings.Contains(out, "src=198.18.0.1 dst=198.18.0.2") || !strings.Contains(out, "dport=5001") ||
		!strings.Contains(out, "1 flow entries have been shown") {
		t.Errorf("dpfw conntrack list: %v\n%s", err, out)
	}
	out, err = p.cli("rules", "list")
	if err != nil || !strings.Contains(out, "Chain INPUT") || !strings.Contains(out, "--dport 5001") || !strings.Contains(out, "policy") {
		t.Errorf("dpfw rules list: %v\n%s", err, out)
	}

	// A config with a typo: the reload fails, names the problem, and
	// dpfw keeps running on its last good rules.
	good := p.Config
	p.rewrite(strings.Replace(p.Text(), "workers:", "workerz:", 1))
	out, err = p.cli("reload")
	if err == nil || !strings.Contains(out, `unknown key "workerz"`) || !strings.Contains(out, "unchanged") {
		t.Errorf("reload of a bad config: %v\n%s", err, out)
	}
	if err := ping(); err != nil {
		t.Errorf("ping after a failed reload: %v", err)
	}
	if f := p.metric("dpfw_config_reloads_total", `result="failure"`); f < 1 {
		t.Errorf("failed reloads counted: %v", f)
	}

	// Tighten the rules: no more NEW echo requests. The file watcher and
	// "dpfw reload" both apply it; ping must stop working.
	tight := good
	tight.Rules.Iptables = strings.Replace(good.Rules.Iptables, "-A INPUT -p icmp --icmp-type echo-request -m state --state NEW -j ACCEPT\n", "", 1)
	if tight.Rules.Iptables == good.Rules.Iptables {
		t.Fatal("the echo-request rule is not in the rule set")
	}
	p.reconfigure(tight)
	out, err = p.cli("reload")
	if err != nil || !strings.Contains(out, "reloaded: rule-set generation") {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if err := ping(); err == nil {
		t.Errorf("ping still works after the reload removed the rule allowing it")
	}

	out, err = p.cli("conntrack", "flush")
	if err != nil || !strings.Contains(out, "have been deleted") {
		t.Errorf("dpfw conntrack flush: %v\n%s", err, out)
	}
	out, _ = p.cli("conntrack", "list")
	if !strings.Contains(out, "0 flow entries have been shown") {
		t.Errorf("entries left after flush:\n%s", out)
	}
	p.stop()
}

// TestPcapTwoWorkersSteering: two workers on a device without RSS. Queue 0
// carries N flows' first packets, queue 1 their replies, so without steering
// each worker would track half of every connection. With steering, every
// connection is created exactly once; with steering off, twice.
func TestPcapTwoWorkersSteering(t *testing.T) {
	requireDPDK(t)
	const flows = 200
	both := pcapgen.UDPFlows(flows, true)
	var orig, reply [][]byte
	for i, f := range both {
		if i%2 == 0 {
			orig = append(orig, f)
		} else {
			reply = append(reply, f)
		}
	}
	for _, mode := range []struct {
		steering    string
		wantCreated float64
	}{{"on", flows}, {"off", 2 * flows}} {
		t.Run("steering_"+mode.steering, func(t *testing.T) {
			dir := t.TempDir()
			path := func(n string) string { return filepath.Join(dir, n) }
			for n, frames := range map[string][][]byte{"q0.pcap": orig, "q1.pcap": reply, "e0.pcap": nil, "e1.pcap": nil} {
				if err := pcapgen.Write(path(n), frames); err != nil {
					t.Fatal(err)
				}
			}
			cfg := e2e.Base()
			cfg.Ports = []config.Port{
				{Name: "a", Device: fmt.Sprintf("net_pcap0,rx_pcap=%s,rx_pcap=%s,tx_pcap=%s,tx_pcap=%s", path("q0.pcap"), path("q1.pcap"), path("back0.pcap"), path("back1.pcap"))},
				{Name: "b", Device: fmt.Sprintf("net_pcap1,rx_pcap=%s,rx_pcap=%s,tx_pcap=%s,tx_pcap=%s", path("e0.pcap"), path("e1.pcap"), path("out0.pcap"), path("out1.pcap"))},
			}
			cfg.Links = []config.Link{{Name: "wire", Ports: []string{"a", "b"}}}
			cfg.Workers.CPUs, cfg.Workers.IdleSleep, cfg.Workers.Steering = []int{0, 1}, 100*time.Microsecond, mode.steering
			e2e.Iptables(&cfg, "-A FORWARD -m state --state INVALID -j DROP\n", "")
			p := startDPFW(t, cfg)
			if got := p.waitMetric("dpfw_port_rx_packets_total", `port="a"`, 2*flows, 10*time.Second); got != 2*flows {
				t.Fatalf("received %v; want %d", got, 2*flows)
			}
			p.waitMetric("dpfw_port_tx_packets_total", `port="b"`, 2*flows, 5*time.Second)
			if got := p.metric("dpfw_conntrack_created_total"); got != mode.wantCreated {
				t.Errorf("connections created: %v; want %v", got, mode.wantCreated)
			}
			p.stop()
			var out int
			for _, f := range []string{"out0.pcap", "out1.pcap"} {
				fr, _ := pcapgen.Read(path(f))
				out += len(fr)
			}
			if out != 2*flows {
				t.Errorf("forwarded %d frames; want %d", out, 2*flows)
			}
		})
	}
}

// TestTapReject: REJECT answers as iptables' does (a TCP RST makes the
// client fail at once with "connection refused"; ICMP host-prohibited makes
// ping say so) and LOG writes an iptables-style line.
func TestTapReject(t *testing.T) {
	requireDPDK(t)
	p, cns, _ := tapPair(t, withRules(`-P INPUT DROP
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p tcp --dport 5003 -j LOG --log-prefix "dpfw-reject: "
-A INPUT -p tcp --dport 5003 -j REJECT --reject-with tcp-reset
-A INPUT -p icmp --icmp-type echo-request -j REJECT --reject-with icmp-host-prohibited
`))
	start := time.Now()
	out, err := fetchTimeout(cns, "198.18.0.2:5003", 3*time.Second)
	if err == nil || !strings.Contains(out, "connection refused") || time.Since(start) > 2*time.Second {
		t.Errorf("connecting to a REJECTed port: %v after %v: %s; want connection refused at once", err, time.Since(start), out)
	}
	po, _ := cns.Command("ping", "-c", "1", "-W", "2", "198.18.0.2").CombinedOutput()
	if !strings.Contains(string(po), "Destination Host Prohibited") {
		t.Errorf("ping to a REJECTed host:\n%s\nwant Destination Host Prohibited\n%s", po, p.dump())
	}
	if n := p.metric("dpfw_worker_reject_answers_total"); n < 2 {
		t.Errorf("REJECT answers sent: %v; want at least 2", n)
	}
	if !p.waitLog("dpfw-reject: IN=outside OUT=inside SRC=198.18.0.1 DST=198.18.0.2", 2*time.Second) {
		t.Errorf("no LOG line in dpfw's log:\n%s", p.errOut.String())
	}
	p.stop()
}

// TestTapReloadUnderLoad: 20 reloads, good and bad configs alternating,
// during a 30 s iperf3 transfer: the connection survives (conntrack state
// and the rule set swap atomically) and the transfer completes.
func TestTapReloadUnderLoad(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "iperf3")
	p, cns, sns := tapPair(t, withRules(statefulRules+"-A INPUT -p tcp --dport 5201 -m state --state NEW -j ACCEPT\n"))
	cli, done, out := startIperf(t, cns, sns, 30)
	good, bad := p.Config, strings.Replace(p.Text(), "links:", "linkz:", 1)
	failures := 0
	for i := 0; i < 20; i++ {
		time.Sleep(1200 * time.Millisecond)
		if i%2 == 1 {
			p.rewrite(bad)
		} else {
			// A good config that changes the rule set (a new comment).
			cfg := good
			cfg.Rules.Iptables = strings.Replace(good.Rules.Iptables, "-j ACCEPT\n", fmt.Sprintf("-m comment --comment r%d -j ACCEPT\n", i), 1)
			p.reconfigure(cfg)
		}
		if _, err := p.cli("reload"); err != nil {
			failures++
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("iperf3 failed during reloads: %v\n%s\n%s", err, out.String(), p.dump())
		}
	case <-time.After(40 * time.Second):
		_ = cli.Process.Kill()
		t.Fatalf("iperf3 did not finish:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "receiver") {
		t.Errorf("iperf3 output has no receiver summary:\n%s", out.String())
	}
	if failures != 10 {
		t.Errorf("%d reloads failed; want the 10 bad ones", failures)
	}
	if ok := p.metric("dpfw_config_reloads_total", `result="success"`); ok < 10 {
		t.Errorf("successful reloads: %v; want at least 10 (the watcher may add more)", ok)
	}
	p.stop()
}

// TestSchedulerKeepsControlP: after the control threads leave the worker
// CPUs, GOMAXPROCS stays one P per worker plus the housekeeping CPUs. Go's
// runtime (≥ 1.25) would otherwise lower it, within a second, to the CPUs
// its own thread may use, leaving the polling workers' Ps all there is:
// the control plane (the sync's and the events' pumps, metrics, the API)
// then ran tens of milliseconds late and the sync rings overflowed.
func TestSchedulerKeepsControlP(t *testing.T) {
	requireDPDK(t)
	pass, _ := goldenFrames()
	p := startPcap(t, pass, nil)
	p.waitReceived()
	time.Sleep(2500 * time.Millisecond) // past the runtime's once-a-second check
	workers := 1                        // the default config's workers.cpus: [1]
	want := float64(workers + max(runtime.NumCPU()-workers, 1))
	if got := p.metric("go_sched_gomaxprocs_threads"); got != want {
		t.Errorf("GOMAXPROCS %v after start-up; want %v (one P per worker plus the housekeeping CPUs)", got, want)
	}
	p.stop()
}
