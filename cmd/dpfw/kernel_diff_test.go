package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
)

// The verdict differential: the same crafted frames go through the
// kernel's own conntrack (a Linux bridge with br_netfilter and an inet
// forward chain) and through dpfw (two net_tap ports), one at a time;
// each frame either comes out of the other side or does not. Every frame
// must get the same fate from both, or be listed in knownDifferences with
// the reason (the README lists them).
//
// The rule set, in both: replies and related packets pass, new
// connections from A (198.18.0.1, 2001:2::1) to TCP 5001, UDP 53 and
// ICMP echo pass, everything else (INVALID included) is dropped.

const (
	kdA4, kdB4 = "198.18.0.1", "198.18.0.2"
	kdA6, kdB6 = "2001:2::1", "2001:2::2"
)

var (
	kdMACA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	kdMACB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

const kdNftRules = `
table inet kd {
	chain forward_kd {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state new ip saddr 198.18.0.1 tcp dport 5001 accept
		ct state new ip saddr 198.18.0.1 udp dport 53 accept
		ct state new ip saddr 198.18.0.1 icmp type echo-request accept
		ct state new ip6 saddr 2001:2::1 tcp dport 5001 accept
		ct state new ip6 saddr 2001:2::1 udp dport 53 accept
		ct state new ip6 saddr 2001:2::1 icmpv6 type echo-request accept
	}
}
`

// kdDpfwRules are the same rules as an iptables and an ip6tables rule
// set, so that each family has its own chains and policies (rules.iptables6).
func kdDpfwRules(c *config.Config) {
	e2e.Iptables(c, `-P FORWARD DROP
-A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -s 198.18.0.1 -p tcp --dport 5001 -m state --state NEW -j ACCEPT
-A FORWARD -s 198.18.0.1 -p udp --dport 53 -m state --state NEW -j ACCEPT
-A FORWARD -s 198.18.0.1 -p icmp --icmp-type echo-request -m state --state NEW -j ACCEPT
`, `-P FORWARD DROP
-A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -s 2001:2::1 -p tcp --dport 5001 -m state --state NEW -j ACCEPT
-A FORWARD -s 2001:2::1 -p udp --dport 53 -m state --state NEW -j ACCEPT
-A FORWARD -s 2001:2::1 -p icmpv6 --icmpv6-type echo-request -m state --state NEW -j ACCEPT
`)
}

// kdPacket is one frame of a sequence: its bytes, which side sends it (0:
// A, 1: B) and what it is, for messages.
type kdPacket struct {
	frame []byte
	dir   int
	what  string
}

// rawSock is an AF_PACKET socket on an interface in a network namespace.
type rawSock struct {
	fd, ifindex int
}

// openRaw opens a raw socket on ifname inside namespace ns (the socket
// stays in ns; the thread that made it is discarded).
func openRaw(t *testing.T, ns, ifname string) *rawSock {
	t.Helper()
	type res struct {
		s   *rawSock
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			ch <- res{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- res{err: err}
			return
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			ch <- res{err: err}
			return
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			ch <- res{err: err}
			return
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			ch <- res{err: err}
			return
		}
		tv := unix.NsecToTimeval(int64(5 * time.Millisecond))
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		ch <- res{s: &rawSock{fd: fd, ifindex: ifi.Index}}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("raw socket on %s in %s: %v", ifname, ns, r.err)
	}
	t.Cleanup(func() { unix.Close(r.s.fd) })
	return r.s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (s *rawSock) send(frame []byte) error {
	return unix.Sendto(s.fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: s.ifindex, Halen: 6})
}

// marker is the index of a test frame: the IPv4 ID or the IPv6 flow
// label (neither matters to connection tracking). 0: not a test frame.
func marker(f []byte) int {
	if len(f) < 14+20 {
		return 0
	}
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		return int(binary.BigEndian.Uint16(f[18:]))
	case 0x86dd:
		return int(binary.BigEndian.Uint32(f[14:]) & 0xfffff)
	}
	return 0
}

// collect records the markers of the frames that arrive on s until stop.
func (s *rawSock) collect(seen *sync.Map, stop <-chan struct{}) {
	s.receive(stop, func(f []byte) {
		if m := marker(f); m != 0 {
			seen.Store(m, true)
		}
	})
}

// receive calls fn with every frame that arrives on s (not the ones s
// sends) until stop.
func (s *rawSock) receive(stop <-chan struct{}, fn func(frame []byte)) {
	buf := make([]byte, 9000)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		fn(buf[:n])
	}
}

// kdPath is one system under test: the two sides' sockets.
type kdPath struct {
	name string
	side [2]*rawSock
}

// run sends every packet in order and reports which came out of the other
// side (waiting up to wait for each).
func (p *kdPath) run(pkts []kdPacket, wait time.Duration) []bool {
	var seen [2]sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); p.side[i].collect(&seen[i], stop) }()
	}
	for i, pk := range pkts {
		_ = p.side[pk.dir].send(pk.frame)
		deadline := time.Now().Add(wait)
		for time.Now().Before(deadline) {
			if _, ok := seen[1-pk.dir].Load(i + 1); ok {
				break
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // late arrivals count
	close(stop)
	wg.Wait()
	out := make([]bool, len(pkts))
	for i, pk := range pkts {
		_, out[i] = seen[1-pk.dir].Load(i + 1)
	}
	return out
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// nftFile loads an nft ruleset into namespace ns.
func nftFile(t *testing.T, ns, rules string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", ns, err, out)
	}
}

// quiet drops everything a namespace's kernel would receive, so that its
// stack never answers an injected frame (raw sockets still see them), and
// turns IPv6 autoconfiguration off.
func quiet(t *testing.T, ns string) {
	t.Helper()
	nftFile(t, ns, "table inet quiet {\n chain qin { type filter hook input priority -300; policy drop; }\n chain qout { type filter hook output priority -300; policy drop; }\n}\n")
	for _, k := range []string{"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"} {
		sh(t, "ip", "netns", "exec", ns, "sysctl", "-qw", k)
	}
}

// kernelPath builds the kernel reference: A — bridge (br_netfilter, the
// nft rules) — B, each in its own namespace.
func kernelPath(t *testing.T, nftRules string) (*kdPath, netns) {
	t.Helper()
	if _, err := os.Stat("/proc/sys/net/bridge"); err != nil {
		_ = exec.Command("modprobe", "br_netfilter").Run()
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Fatalf("nft is not installed (make deps installs nftables)")
	}
	id := os.Getpid() % 100000
	a, br, b := newNetns(t, fmt.Sprintf("kd-a%d", id)), newNetns(t, fmt.Sprintf("kd-br%d", id)), newNetns(t, fmt.Sprintf("kd-b%d", id))
	sh(t, "ip", "-n", string(a), "link", "add", "ka0", "type", "veth", "peer", "name", "ka1", "netns", string(br))
	sh(t, "ip", "-n", string(b), "link", "add", "kb0", "type", "veth", "peer", "name", "kb1", "netns", string(br))
	sh(t, "ip", "-n", string(br), "link", "add", "br0", "type", "bridge")
	for _, l := range []string{"ka1", "kb1"} {
		sh(t, "ip", "-n", string(br), "link", "set", l, "master", "br0")
		sh(t, "ip", "-n", string(br), "link", "set", l, "up")
	}
	sh(t, "ip", "-n", string(br), "link", "set", "br0", "up")
	for _, k := range []string{"net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"} {
		sh(t, "ip", "netns", "exec", string(br), "sysctl", "-qw", k)
	}
	nftFile(t, string(br), nftRules)
	for ns, l := range map[netns]string{a: "ka0", b: "kb0"} {
		quiet(t, string(ns))
		sh(t, "ip", "-n", string(ns), "link", "set", l, "up")
		// Checksums as written: no offload on the veths.
		_ = exec.Command("ip", "netns", "exec", string(ns), "ethtool", "-K", l, "tx", "off", "rx", "off").Run()
	}
	time.Sleep(200 * time.Millisecond)
	return &kdPath{name: "kernel", side: [2]*rawSock{openRaw(t, string(a), "ka0"), openRaw(t, string(b), "kb0")}}, br
}

// dpfwPath runs dpfw between two namespaces with the same rules (a
// config change).
func dpfwPath(t *testing.T, rules func(*config.Config)) (*kdPath, *proc) {
	t.Helper()
	p, cns, sns := tapPair(t, rules)
	ci, si := tapNames()
	quiet(t, string(cns))
	quiet(t, string(sns))
	return &kdPath{name: "dpfw", side: [2]*rawSock{openRaw(t, string(cns), ci), openRaw(t, string(sns), si)}}, p
}

// knownDifferences are the frames on which dpfw deliberately differs from
// the kernel, by the "what" of the frame, with the reason.
var knownDifferences = map[string]string{}

// knownFTPDifferences are expectations the kernel makes and dpfw refuses
// on purpose, by the announcement, with the reason.
var knownFTPDifferences = map[string]string{
	"PORT 198,18,0,1,256,85": "the kernel's parser has no range check and wraps 256,85 to port 85; dpfw makes no expectation of an out-of-range number",
}

// TestKernelConntrackDifferential sends generated sequences through both.
func TestKernelConntrackDifferential(t *testing.T) {
	requireDPDK(t)
	if _, err := exec.LookPath("nft"); err != nil && os.Getenv("CI") == "" {
		t.Skip("nft is not installed (make deps)")
	}
	pkts := kdSequences(rand.New(rand.NewPCG(2026, 12)))
	if len(pkts) >= 1<<16 {
		t.Fatalf("%d packets: markers are 16 bits", len(pkts))
	}
	k, _ := kernelPath(t, kdNftRules)
	d, p := dpfwPath(t, kdDpfwRules)
	kres, dres := runBoth(k, d, pkts)
	compareFates(t, pkts, kres, dres, p)
	p.stop()
}

// runBoth sends pkts through both paths at once.
func runBoth(k, d *kdPath, pkts []kdPacket) (kres, dres []bool) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); kres = k.run(pkts, 30*time.Millisecond) }()
	go func() { defer wg.Done(); dres = d.run(pkts, 30*time.Millisecond) }()
	wg.Wait()
	return kres, dres
}

// compareFates requires every frame to get the same fate from both.
func compareFates(t *testing.T, pkts []kdPacket, kres, dres []bool, p *proc) {
	t.Helper()
	agree, passed, known := 0, 0, 0
	var bad []string
	for i := range pkts {
		if kres[i] {
			passed++
		}
		if kres[i] == dres[i] {
			agree++
			continue
		}
		if _, ok := knownDifferences[pkts[i].what]; ok {
			known++
			continue
		}
		bad = append(bad, fmt.Sprintf("#%d %s: kernel %s, dpfw %s", i+1, pkts[i].what, fate(kres[i]), fate(dres[i])))
	}
	t.Logf("conntrack verdicts: %d packets, %d agree with the kernel (%d passed the kernel), %d known differences, %d disagree",
		len(pkts), agree, passed, known, len(bad))
	for i, b := range bad {
		if i == 40 {
			t.Errorf("… and %d more", len(bad)-40)
			break
		}
		t.Errorf("%s", b)
	}
	if len(bad) > 0 {
		t.Logf("dpfw:\n%s", p.dump())
	}
}

func fate(passed bool) string {
	if passed {
		return "passed"
	}
	return "dropped"
}

// kdBuilder makes the frames of the sequences, numbering them.
type kdBuilder struct {
	pkts  []kdPacket
	port  uint16
	r     *rand.Rand
	label string
}

func (b *kdBuilder) add(dir int, what string, ls ...gopacket.SerializableLayer) []byte {
	n := len(b.pkts) + 1
	for _, l := range ls {
		switch ip := l.(type) {
		case *layers.IPv4:
			ip.Id = uint16(n)
		case *layers.IPv6:
			ip.FlowLabel = uint32(n)
		}
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		panic(err)
	}
	f := append([]byte(nil), buf.Bytes()...)
	b.pkts = append(b.pkts, kdPacket{frame: f, dir: dir, what: b.label + ": " + what})
	return f
}

// flow is one connection's endpoints.
type kdFlow struct {
	v6           bool
	aport, bport uint16
}

func (b *kdBuilder) newFlow(v6 bool, bport uint16) kdFlow {
	b.port++
	return kdFlow{v6: v6, aport: 10000 + b.port, bport: bport}
}

func (f kdFlow) eth(dir int) *layers.Ethernet {
	e := &layers.Ethernet{SrcMAC: kdMACA, DstMAC: kdMACB, EthernetType: layers.EthernetTypeIPv4}
	if dir == 1 {
		e.SrcMAC, e.DstMAC = kdMACB, kdMACA
	}
	if f.v6 {
		e.EthernetType = layers.EthernetTypeIPv6
	}
	return e
}

func (f kdFlow) ip(dir int, proto layers.IPProtocol) (gopacket.SerializableLayer, gopacket.NetworkLayer) {
	if f.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.ParseIP(kdA6), DstIP: net.ParseIP(kdB6)}
		if dir == 1 {
			ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
		}
		return ip, ip
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP(kdA4).To4(), DstIP: net.ParseIP(kdB4).To4()}
	if dir == 1 {
		ip.SrcIP, ip.DstIP = ip.DstIP, ip.SrcIP
	}
	return ip, ip
}

// tcpSeg is a TCP segment of flow f sent by dir.
type tcpSeg struct {
	flags    string // S, A, F, R, P, U
	seq, ack uint32
	win      uint16
	payload  int
	wscale   int // window scale option on SYNs (-1: none)
	badSum   bool
	data     []byte // payload bytes (else payload zeros)
}

func (b *kdBuilder) tcp(f kdFlow, dir int, s tcpSeg, what string) []byte {
	eth := f.eth(dir)
	ipl, nl := f.ip(dir, layers.IPProtocolTCP)
	t := &layers.TCP{SrcPort: layers.TCPPort(f.aport), DstPort: layers.TCPPort(f.bport), Seq: s.seq, Ack: s.ack, Window: s.win}
	if dir == 1 {
		t.SrcPort, t.DstPort = t.DstPort, t.SrcPort
	}
	pcapgen.SetTCPFlags(t, s.flags)
	if t.SYN {
		t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}})
		if s.wscale >= 0 {
			t.Options = append(t.Options, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{byte(s.wscale)}})
		}
	}
	_ = t.SetNetworkLayerForChecksum(nl)
	ls := []gopacket.SerializableLayer{eth, ipl, t}
	switch {
	case s.data != nil:
		ls = append(ls, gopacket.Payload(s.data))
	case s.payload > 0:
		ls = append(ls, gopacket.Payload(make([]byte, s.payload)))
	}
	fr := b.add(dir, what, ls...)
	if s.badSum {
		fr[len(fr)-1-s.payload+min(s.payload, 1)] ^= 0x5a // the TCP header's last byte or the data's first
		if s.payload == 0 {
			off := 14 + 20
			if f.v6 {
				off = 14 + 40
			}
			fr[off+16] ^= 0x5a // the checksum itself
		}
		b.pkts[len(b.pkts)-1].frame = fr
	}
	return fr
}

func (b *kdBuilder) udp(f kdFlow, dir int, payload int, what string) []byte {
	eth := f.eth(dir)
	ipl, nl := f.ip(dir, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: layers.UDPPort(f.aport), DstPort: layers.UDPPort(f.bport)}
	if dir == 1 {
		u.SrcPort, u.DstPort = u.DstPort, u.SrcPort
	}
	_ = u.SetNetworkLayerForChecksum(nl)
	return b.add(dir, what, eth, ipl, u, gopacket.Payload(make([]byte, payload)))
}

// echo is an ICMP(v6) echo request (reply false) or reply of id.
func (b *kdBuilder) echo(f kdFlow, dir int, reply bool, id, seq uint16, what string) {
	eth := f.eth(dir)
	if f.v6 {
		ipl, nl := f.ip(dir, layers.IPProtocolICMPv6)
		typ := uint8(layers.ICMPv6TypeEchoRequest)
		if reply {
			typ = layers.ICMPv6TypeEchoReply
		}
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		_ = ic.SetNetworkLayerForChecksum(nl)
		b.add(dir, what, eth, ipl, ic, &layers.ICMPv6Echo{Identifier: id, SeqNumber: seq}, gopacket.Payload(make([]byte, 16)))
		return
	}
	ipl, _ := f.ip(dir, layers.IPProtocolICMPv4)
	typ := uint8(layers.ICMPv4TypeEchoRequest)
	if reply {
		typ = layers.ICMPv4TypeEchoReply
	}
	b.add(dir, what, eth, ipl, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}, gopacket.Payload(make([]byte, 16)))
}

// icmpError sends an ICMP destination unreachable from dir quoting the
// frame orig (which dir's peer sent).
func (b *kdBuilder) icmpError(f kdFlow, dir int, orig []byte, what string) {
	eth := f.eth(dir)
	quote := orig[14:]
	if f.v6 {
		quote = quote[:min(len(quote), 40+8)]
		ipl, nl := f.ip(dir, layers.IPProtocolICMPv6)
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeDestinationUnreachable, 4)}
		_ = ic.SetNetworkLayerForChecksum(nl)
		b.add(dir, what, eth, ipl, ic, gopacket.Payload(append(make([]byte, 4), quote...)))
		return
	}
	quote = quote[:min(len(quote), 20+8)]
	ipl, _ := f.ip(dir, layers.IPProtocolICMPv4)
	b.add(dir, what, eth, ipl, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, 3)}, gopacket.Payload(quote))
}

// kdSequences generates the test sequences: TCP lifecycles with
// perturbations, UDP, ICMP and ICMP errors, IPv4 and IPv6.
func kdSequences(r *rand.Rand) []kdPacket {
	b := &kdBuilder{r: r}
	for round := 0; len(b.pkts) < 2200; round++ {
		v6 := round%4 == 3
		b.label = fmt.Sprintf("seq %d", round)
		switch round % 8 {
		case 0, 1, 2, 3, 5:
			b.tcpLifecycle(v6)
		case 4:
			b.udpExchange(v6)
		case 6:
			b.icmpExchange(v6)
		case 7:
			b.tcpOddities(v6)
		}
	}
	return b.pkts
}

// tcpLifecycle: handshake, data both ways with one perturbation, close.
func (b *kdBuilder) tcpLifecycle(v6 bool) {
	r := b.r
	f := b.newFlow(v6, 5001)
	ws := -1
	if r.IntN(2) == 0 {
		ws = r.IntN(9)
	}
	ia, ib := r.Uint32(), r.Uint32()
	win := uint16(8192 + r.IntN(50000))
	b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: win, wscale: ws}, "SYN")
	if r.IntN(10) == 0 {
		b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: win, wscale: ws}, "SYN retransmitted")
	}
	b.tcp(f, 1, tcpSeg{flags: "SA", seq: ib, ack: ia + 1, win: win, wscale: ws}, "SYN/ACK")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: ia + 1, ack: ib + 1, win: win}, "ACK of SYN/ACK")
	sa, sb := ia+1, ib+1
	perturb := r.IntN(16)
	for i := 0; i < 3; i++ {
		n := 100 + r.IntN(1200)
		if i == 1 {
			b.perturb(f, perturb, sa, sb, win)
		}
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: win, payload: n}, "data A")
		sa += uint32(n)
		b.tcp(f, 1, tcpSeg{flags: "A", seq: sb, ack: sa, win: win}, "ACK B")
		m := 100 + r.IntN(1200)
		b.tcp(f, 1, tcpSeg{flags: "PA", seq: sb, ack: sa, win: win, payload: m}, "data B")
		sb += uint32(m)
		b.tcp(f, 0, tcpSeg{flags: "A", seq: sa, ack: sb, win: win}, "ACK A")
	}
	if r.IntN(3) == 0 {
		b.tcp(f, 0, tcpSeg{flags: "RA", seq: sa, ack: sb, win: 0}, "RST A in window")
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: win, payload: 10}, "data A after RST")
		b.tcp(f, 0, tcpSeg{flags: "S", seq: sa + 100000, win: win, wscale: ws}, "SYN reusing the tuple after RST")
		return
	}
	b.tcp(f, 0, tcpSeg{flags: "FA", seq: sa, ack: sb, win: win}, "FIN A")
	b.tcp(f, 1, tcpSeg{flags: "A", seq: sb, ack: sa + 1, win: win}, "ACK of FIN A")
	b.tcp(f, 1, tcpSeg{flags: "FA", seq: sb, ack: sa + 1, win: win}, "FIN B")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: sa + 1, ack: sb + 1, win: win}, "last ACK")
	if r.IntN(2) == 0 {
		b.tcp(f, 0, tcpSeg{flags: "S", seq: sa + 200000, win: win, wscale: ws}, "SYN reusing the tuple in TIME_WAIT")
		b.tcp(f, 1, tcpSeg{flags: "SA", seq: sb + 300000, ack: sa + 200001, win: win, wscale: ws}, "SYN/ACK of the reused tuple")
	}
}

// perturb inserts one odd segment into an established connection.
func (b *kdBuilder) perturb(f kdFlow, kind int, sa, sb uint32, win uint16) {
	switch kind {
	case 0:
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa - 1<<30, ack: sb, win: win, payload: 50}, "data 2^30 below the window")
	case 1:
		b.tcp(f, 0, tcpSeg{flags: "A", seq: sa, ack: sb - 1<<30, win: win}, "ACK 2^30 below")
	case 2:
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa + uint32(win)*4, ack: sb, win: win, payload: 50}, "data beyond the window")
	case 3:
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa - 200, ack: sb, win: win, payload: 200}, "retransmitted data")
	case 4:
		b.tcp(f, 0, tcpSeg{flags: "R", seq: sa + 1<<20, win: 0}, "RST out of window")
	case 5:
		b.tcp(f, 0, tcpSeg{flags: "S", seq: sa + 12345, win: win, wscale: -1}, "SYN in ESTABLISHED")
	case 6:
		b.tcp(f, 0, tcpSeg{flags: "SF", seq: sa, ack: sb, win: win}, "SYN+FIN")
	case 7:
		b.tcp(f, 0, tcpSeg{flags: "", seq: sa, ack: sb, win: win}, "no flags")
	case 8:
		b.tcp(f, 0, tcpSeg{flags: "FPU", seq: sa, ack: sb, win: win}, "FIN+PSH+URG without ACK")
	case 9:
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: win, payload: 60, badSum: true}, "data with a bad checksum")
	case 10:
		b.tcp(f, 1, tcpSeg{flags: "A", seq: sb, ack: sa + 1<<20, win: win}, "ACK of data never sent")
	case 11:
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: 0, payload: 0}, "zero window")
	}
}

// tcpOddities: connections that never open properly.
func (b *kdBuilder) tcpOddities(v6 bool) {
	r := b.r
	ia, ib := r.Uint32(), r.Uint32()
	f := b.newFlow(v6, 5002)
	b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: 1000, wscale: -1}, "SYN to a closed port")
	f = b.newFlow(v6, 5001)
	b.tcp(f, 1, tcpSeg{flags: "SA", seq: ib, ack: ia, win: 1000, wscale: -1}, "SYN/ACK without a SYN")
	f = b.newFlow(v6, 5001)
	b.tcp(f, 0, tcpSeg{flags: "PA", seq: ia, ack: ib, win: 5000, payload: 100}, "mid-stream data from A (tcp_loose)")
	b.tcp(f, 1, tcpSeg{flags: "A", seq: ib, ack: ia + 100, win: 5000}, "mid-stream ACK from B")
	f = b.newFlow(v6, 5001)
	b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: 5000, wscale: -1}, "SYN")
	b.tcp(f, 1, tcpSeg{flags: "SA", seq: ib, ack: ia + 1, win: 5000, wscale: -1}, "SYN/ACK")
	b.tcp(f, 1, tcpSeg{flags: "SA", seq: ib + 100000, ack: ia + 1, win: 5000, wscale: -1}, "second SYN/ACK, higher ISN")
	b.tcp(f, 1, tcpSeg{flags: "PA", seq: ib + 100001, ack: ia + 1, win: 5000, payload: 50}, "server data at the second ISN")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: ia + 1, ack: ib + 100001, win: 5000}, "client ACK of the second ISN")
	f = b.newFlow(v6, 5001)
	b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: 5000, wscale: -1}, "SYN")
	b.tcp(f, 1, tcpSeg{flags: "RA", seq: 0, ack: ia + 1, win: 0}, "RST/ACK refusing the SYN")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: ia + 1, ack: ib, win: 5000}, "ACK after the refusal")
}

// udpExchange: a request, replies, and strays.
func (b *kdBuilder) udpExchange(v6 bool) {
	f := b.newFlow(v6, 53)
	b.udp(f, 0, 40, "UDP request")
	b.udp(f, 1, 120, "UDP reply")
	b.udp(f, 1, 120, "UDP second reply")
	b.udp(f, 0, 40, "UDP second request")
	g := b.newFlow(v6, 54)
	b.udp(g, 0, 40, "UDP to a closed port")
	b.udp(g, 1, 40, "UDP from B, new")
}

// icmpExchange: echo, stray replies, and errors quoting known and unknown
// flows.
func (b *kdBuilder) icmpExchange(v6 bool) {
	r := b.r
	f := b.newFlow(v6, 5001)
	id := uint16(r.IntN(60000) + 1)
	b.echo(f, 0, false, id, 1, "echo request")
	b.echo(f, 1, true, id, 1, "echo reply")
	b.echo(f, 1, true, id+1, 1, "echo reply without a request")
	b.echo(f, 1, false, id, 2, "echo request from B")
	ia := r.Uint32()
	syn := b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: 5000, wscale: -1}, "SYN")
	b.icmpError(f, 1, syn, "ICMP error quoting the SYN (RELATED)")
	g := b.newFlow(v6, 5001)
	stray := b.tcp(g, 0, tcpSeg{flags: "S", seq: ia, win: 5000, wscale: -1}, "SYN")
	h := b.newFlow(v6, 5001)
	unsent := b.tcp(h, 0, tcpSeg{flags: "A", seq: 1, ack: 1, win: 1}, "")
	b.pkts = b.pkts[:len(b.pkts)-1] // never sent: only quoted
	b.icmpError(h, 1, unsent, "ICMP error quoting an unknown flow")
	_ = stray
}

// The FTP differential: control sessions whose lines announce data
// connections, through the kernel's nf_conntrack_ftp (conntrack -L expect)
// and through dpfw (dpfw conntrack expect): the same expectations.

const kdFTPNft = `
table inet kd {
	ct helper ftp-standard {
		type "ftp" protocol tcp;
	}
	chain pre_kd {
		type filter hook prerouting priority filter;
		tcp dport 21 ct helper set "ftp-standard"
	}
	chain forward_kd {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state new ip saddr 198.18.0.1 tcp dport 21 accept
		ct state new ip6 saddr 2001:2::1 tcp dport 21 accept
	}
}
`

const kdFTPDpfw = `-P FORWARD DROP
-A FORWARD -m state --state ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -s 198.18.0.1 -p tcp --dport 21 -m state --state NEW -j ACCEPT
-A FORWARD -s 2001:2::1 -p tcp --dport 21 -m state --state NEW -j ACCEPT
`

// ftpAnnouncements are the lines, by the side that sends them (0: the
// client, 1: the server), with whether the session is IPv6.
var ftpAnnouncements = []struct {
	dir  int
	v6   bool
	line string
}{
	{0, false, "PORT 198,18,0,1,195,80"},
	{0, false, "PORT 198,018,000,001,195,81"},
	{0, false, "port 198,18,0,1,195,82"},
	{0, false, "PORT 198,18,0,9,195,83"}, // another host: a bounce
	{0, false, "PORT 198,18,0,1,195,84 trailing"},
	{0, false, "PORT 198,18,0,1,195"},
	{0, false, "PORT 198,18,0,1,256,85"}, // knownFTPDifferences
	{0, false, "PORT 198,18,0,1,0,80"},   // a low port: refused by dpfw unless allow_low_ports
	{0, false, "EPRT |1|198.18.0.1|50010|"},
	{0, false, "EPRT |1|198.018.000.001|50011|"},
	{0, false, "EPRT !1!198.18.0.1!50013!"},
	{0, false, "EPRT |01|198.18.0.1|50014|"},
	{0, false, "EPRT |2|198.18.0.1|50015|"},
	{0, false, "EPRT |1|198.18.0.1|0|"},
	{0, true, "EPRT |2|2001:2::1|50016|"},
	{0, true, "EPRT |1|198.18.0.1|50017|"},
	{0, true, "EPRT |2|2001:2::9|50018|"},
	{1, false, "227 Entering Passive Mode (198,18,0,2,195,90)."},
	{1, false, "227-Entering Passive Mode (198,18,0,2,195,91)."},
	{1, false, "227 Entering Passive Mode 198,18,0,2,195,92"},
	{1, false, "227 Entering Passive Mode (198,18,0,7,195,93)."},
	{1, false, "227 Entering Passive Mode (198,018,0,002,195,94)."},
	{1, false, "229 Entering Extended Passive Mode (|||50095|)"},
	{1, false, "229-Entering Extended Passive Mode (|||50096|)"},
	{1, false, "229 Entering Extended Passive Mode (||50097|)"},
	{1, true, "229 Entering Extended Passive Mode (|||50098|)"},
}

// ftpSessions builds one control connection per announcement: handshake,
// a first line each way (nf_conntrack_ftp reads a direction only after a
// line end it has seen), the announcement, its ACK.
func ftpSessions(r *rand.Rand) []kdPacket {
	b := &kdBuilder{r: r}
	for i, a := range ftpAnnouncements {
		b.label = fmt.Sprintf("ftp %d %q", i, a.line)
		f := b.newFlow(a.v6, 21)
		ia, ib := r.Uint32(), r.Uint32()
		b.tcp(f, 0, tcpSeg{flags: "S", seq: ia, win: 64000, wscale: -1}, "SYN")
		b.tcp(f, 1, tcpSeg{flags: "SA", seq: ib, ack: ia + 1, win: 64000, wscale: -1}, "SYN/ACK")
		sa, sb := ia+1, ib+1
		b.tcp(f, 0, tcpSeg{flags: "A", seq: sa, ack: sb, win: 64000}, "ACK")
		banner := []byte("220 ready\r\n")
		b.tcp(f, 1, tcpSeg{flags: "PA", seq: sb, ack: sa, win: 64000, data: banner}, "banner")
		sb += uint32(len(banner))
		user := []byte("USER anonymous\r\n")
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: 64000, data: user}, "USER")
		sa += uint32(len(user))
		b.tcp(f, 1, tcpSeg{flags: "A", seq: sb, ack: sa, win: 64000}, "ACK")
		line := []byte(a.line + "\r\n")
		if a.dir == 0 {
			b.tcp(f, 0, tcpSeg{flags: "PA", seq: sa, ack: sb, win: 64000, data: line}, "announcement")
			sa += uint32(len(line))
			b.tcp(f, 1, tcpSeg{flags: "A", seq: sb, ack: sa, win: 64000}, "ACK")
		} else {
			b.tcp(f, 1, tcpSeg{flags: "PA", seq: sb, ack: sa, win: 64000, data: line}, "announcement")
			sb += uint32(len(line))
			b.tcp(f, 0, tcpSeg{flags: "A", seq: sa, ack: sb, win: 64000}, "ACK")
		}
	}
	return b.pkts
}

// expectKey is what both sides must agree on: the control connection
// (by its client port), the data connection's endpoints and port.
type expectKey struct {
	master          int
	src, dst, dport string
}

var expectRE = regexp.MustCompile(`src=(\S+) dst=(\S+) sport=0 dport=(\d+) .*master-src=\S+ master-dst=\S+ sport=(\d+) dport=21`)

// knownFTP reports whether the kernel's expectation e comes from an
// announcement in knownFTPDifferences (by its master's client port: the
// sessions' ports are 10001, 10002, … in ftpAnnouncements' order), or is
// one of the low ports dpfw refuses by default.
func knownFTP(e expectKey) bool {
	i := e.master - 10001
	if i < 0 || i >= len(ftpAnnouncements) {
		return false
	}
	if _, ok := knownFTPDifferences[ftpAnnouncements[i].line]; ok {
		return true
	}
	port, _ := strconv.Atoi(e.dport)
	return port < 1024 && ftpAnnouncements[i].dir == 0
}

func parseExpectations(out string) map[expectKey]bool {
	m := map[expectKey]bool{}
	for _, l := range strings.Split(out, "\n") {
		if s := expectRE.FindStringSubmatch(l); s != nil {
			port, _ := strconv.Atoi(s[4])
			m[expectKey{master: port, src: s[1], dst: s[2], dport: s[3]}] = true
		}
	}
	return m
}

// TestKernelFTPExpectations: the same announcements, the same
// expectations (and the same fate for every frame of the sessions).
func TestKernelFTPExpectations(t *testing.T) {
	requireDPDK(t)
	if _, err := exec.LookPath("conntrack"); err != nil && os.Getenv("CI") == "" {
		t.Skip("conntrack is not installed (make deps)")
	}
	pkts := ftpSessions(rand.New(rand.NewPCG(21, 21)))
	k, br := kernelPath(t, kdFTPNft)
	d, p := dpfwPath(t, withRules(kdFTPDpfw))
	kres, dres := runBoth(k, d, pkts)
	compareFates(t, pkts, kres, dres, p)
	var kout []byte
	for _, fam := range []string{"ipv4", "ipv6"} {
		out, err := exec.Command("ip", "netns", "exec", string(br), "conntrack", "-L", "expect", "-f", fam).Output() // stdout only: the summary on stderr could land inside a line
		if err != nil {
			t.Fatalf("conntrack -L expect -f %s: %v\n%s", fam, err, out)
		}
		kout = append(kout, out...)
	}
	dout, err := p.cli("conntrack", "expect")
	if err != nil {
		t.Fatalf("dpfw conntrack expect: %v\n%s", err, dout)
	}
	kexp, dexp := parseExpectations(string(kout)), parseExpectations(dout)
	if len(kexp) == 0 {
		t.Fatalf("the kernel made no expectation; is nf_conntrack_ftp there?\n%s", kout)
	}
	same, known := 0, 0
	for e := range kexp {
		switch {
		case dexp[e]:
			same++
		case knownFTP(e):
			known++
		default:
			t.Errorf("the kernel expects %+v, dpfw does not", e)
		}
	}
	for e := range dexp {
		if !kexp[e] {
			t.Errorf("dpfw expects %+v, the kernel does not", e)
		}
	}
	t.Logf("FTP: %d announcements, %d expectations in the kernel, %d in dpfw, %d the same, %d known differences", len(ftpAnnouncements), len(kexp), len(dexp), same, known)
	if t.Failed() {
		t.Logf("kernel:\n%s\ndpfw:\n%s", kout, dout)
	}
	p.stop()
}

// The fragment differential: datagrams sent as fragments (in order, out of
// order, overlapping, duplicated, incomplete, with tiny first fragments),
// each judged by what came out of the other side: the whole datagram once,
// more than that, nothing, or a part. The kernel reassembles before
// tracking (nf_defrag); dpfw holds the fragments until the datagram is
// complete and judges it then. The layouts that differ are listed in
// fragKnown with the reason.

// fragCase is one datagram's fragments, as offsets and lengths (bytes of
// the IP payload) in the order they are sent.
type fragCase struct {
	name  string
	v6    bool
	tcp   bool // a TCP segment (to the allowed port 5001 from A: a SYN) instead of UDP to 53
	size  int  // IP payload bytes
	parts [][2]int
	open  bool // the datagram is allowed by the rules
	// badSum flips a bit of the datagram's last byte: its TCP/UDP checksum
	// is wrong, each fragment's IPv4 header right.
	badSum bool
}

// fragKnown are the layouts on which dpfw differs from the kernel, with the
// reason (the README lists them as deliberate).
var fragKnown = map[string]string{
	"seventy fragments": "dpfw holds at most 64 fragments of one datagram (a 64 KiB datagram needs 45 at an MTU of 1,500), so that tiny-fragment floods cannot take a worker's held-fragment room; the kernel bounds only the bytes held (ipfrag_high_thresh, 4 MB)",
}

var fragCases = []fragCase{
	{name: "two fragments in order", size: 2000, parts: [][2]int{{0, 1480}, {1480, 520}}, open: true},
	{name: "three fragments in order", size: 3000, parts: [][2]int{{0, 1000}, {1000, 1000}, {2000, 1000}}, open: true},
	{name: "later fragment first", size: 2000, parts: [][2]int{{1480, 520}, {0, 1480}}, open: true},
	{name: "first fragment only", size: 2000, parts: [][2]int{{0, 1480}}, open: true},
	{name: "overlapping fragments", size: 2000, parts: [][2]int{{0, 1480}, {1400, 600}}, open: true},
	{name: "overlap in the middle", size: 3000, parts: [][2]int{{0, 1000}, {2000, 1000}, {1000, 1008}}, open: true},
	{name: "duplicate fragment", size: 3000, parts: [][2]int{{0, 1000}, {1000, 1000}, {1000, 1000}, {2000, 1000}}, open: true},
	{name: "duplicate first fragment", size: 2000, parts: [][2]int{{0, 1480}, {0, 1480}, {1480, 520}}, open: true},
	{name: "fragment after completion", size: 2000, parts: [][2]int{{0, 1480}, {1480, 520}, {1480, 520}}, open: true},
	{name: "tiny TCP first fragment", tcp: true, size: 40, parts: [][2]int{{0, 16}, {16, 24}}, open: true},
	{name: "second fragment at offset 8", tcp: true, size: 40, parts: [][2]int{{0, 8}, {8, 32}}, open: true},
	{name: "closed port in order", size: 2000, parts: [][2]int{{0, 1480}, {1480, 520}}, open: false},
	{name: "IPv6 two fragments in order", v6: true, size: 2000, parts: [][2]int{{0, 1448}, {1448, 552}}, open: true},
	{name: "IPv6 later fragment first", v6: true, size: 2000, parts: [][2]int{{1448, 552}, {0, 1448}}, open: true},
	{name: "IPv6 overlapping fragments", v6: true, size: 2000, parts: [][2]int{{0, 1448}, {1400, 600}}, open: true},
	{name: "UDP split at offset 32", size: 200, parts: [][2]int{{0, 32}, {32, 168}}, open: true},
	{name: "eight fragments of 8 bytes", size: 64, parts: eighths(8, 8), open: true},
	{name: "three fragments in reverse order", size: 3000, parts: [][2]int{{2000, 1000}, {1000, 1000}, {0, 1000}}, open: true},
	{name: "later fragments first, closed port", size: 2000, parts: [][2]int{{1480, 520}, {0, 1480}}, open: false},
	{name: "last fragment missing", size: 3000, parts: [][2]int{{0, 1000}, {1000, 1000}}, open: true},
	{name: "TCP header split at 12 bytes", tcp: true, size: 60, parts: [][2]int{{0, 8}, {8, 8}, {16, 44}}, open: true},
	{name: "IPv6 first fragment only", v6: true, size: 2000, parts: [][2]int{{0, 1448}}, open: true},
	{name: "IPv6 tiny TCP first fragment", v6: true, tcp: true, size: 40, parts: [][2]int{{0, 8}, {8, 32}}, open: true},
	{name: "IPv6 UDP split at offset 8", v6: true, size: 200, parts: [][2]int{{0, 8}, {8, 192}}, open: true},
	{name: "seventy fragments", size: 560, parts: eighths(70, 8), open: true},
	{name: "twenty fragments in reverse order", size: 1600, parts: reversed(eighths(20, 80)), open: true},
	{name: "UDP checksum wrong", size: 2000, parts: [][2]int{{0, 1480}, {1480, 520}}, open: true, badSum: true},
	{name: "TCP checksum wrong, later fragment first", tcp: true, size: 600, parts: [][2]int{{296, 304}, {0, 296}}, open: true, badSum: true},
	{name: "IPv6 UDP checksum wrong", v6: true, size: 2000, parts: [][2]int{{0, 1448}, {1448, 552}}, open: true, badSum: true},
}

// reversed is p, last first.
func reversed(p [][2]int) [][2]int {
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// eighths is n fragments of size bytes each, in order.
func eighths(n, size int) [][2]int {
	var p [][2]int
	for i := 0; i < n; i++ {
		p = append(p, [2]int{i * size, size})
	}
	return p
}

// fragFrames builds the fragments of case c with marker id (the IPv4 id
// or IPv6 flow label), from A.
func fragFrames(c fragCase, id uint16, sport uint16) [][]byte {
	dport := uint16(53)
	if !c.open {
		dport = 54
	}
	if c.tcp {
		dport = 5001
	}
	// The whole L4 datagram.
	f := kdFlow{v6: c.v6, aport: sport, bport: dport}
	var l4 []byte
	{
		b := &kdBuilder{}
		var fr []byte
		if c.tcp {
			// An ACK with data (no options: a 20-byte header), NEW by
			// tcp_loose from A to the open port.
			fr = b.tcp(f, 0, tcpSeg{flags: "PA", seq: 1000, ack: 1, win: 5000, payload: c.size - 20}, "")
		} else {
			fr = b.udp(f, 0, c.size-8, "")
		}
		hl := 14 + 20
		if c.v6 {
			hl = 14 + 40
		}
		l4 = fr[hl:]
		if c.badSum {
			l4[len(l4)-1] ^= 0x10
		}
		if len(l4) != c.size {
			panic(fmt.Sprintf("%s: L4 of %d bytes; want %d", c.name, len(l4), c.size))
		}
	}
	var out [][]byte
	for _, p := range c.parts {
		off, n := p[0], p[1]
		more := off+n < len(l4)
		eth := f.eth(0)
		var ls []gopacket.SerializableLayer
		if c.v6 {
			ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolIPv6Fragment, FlowLabel: uint32(id),
				SrcIP: net.ParseIP(kdA6), DstIP: net.ParseIP(kdB6)}
			proto := layers.IPProtocolUDP
			if c.tcp {
				proto = layers.IPProtocolTCP
			}
			// The fragment header (gopacket cannot write one).
			fh := make([]byte, 8, 8+n)
			fh[0] = byte(proto)
			fo := uint16(off/8) << 3
			if more {
				fo |= 1
			}
			binary.BigEndian.PutUint16(fh[2:], fo)
			binary.BigEndian.PutUint32(fh[4:], uint32(id)|0x10000)
			ls = []gopacket.SerializableLayer{eth, ip, gopacket.Payload(append(fh, l4[off:off+n]...))}
		} else {
			proto := layers.IPProtocolUDP
			if c.tcp {
				proto = layers.IPProtocolTCP
			}
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, Id: id, FragOffset: uint16(off / 8),
				SrcIP: net.ParseIP(kdA4).To4(), DstIP: net.ParseIP(kdB4).To4()}
			if more {
				ip.Flags = layers.IPv4MoreFragments
			}
			ls = []gopacket.SerializableLayer{eth, ip, gopacket.Payload(l4[off : off+n])}
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			panic(err)
		}
		out = append(out, append([]byte(nil), buf.Bytes()...))
	}
	return out
}

// payloadOut is the IP payload bytes (after any fragment header) of a
// frame with marker m that came out.
func ipPayloadLen(f []byte) int {
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		ihl := int(f[14]&0x0f) * 4
		return int(binary.BigEndian.Uint16(f[16:])) - ihl
	case 0x86dd:
		n := int(binary.BigEndian.Uint16(f[18:]))
		if f[20] == 44 { // a fragment header
			n -= 8
		}
		return n
	}
	return 0
}

// runFrag sends each case's fragments through a path and returns, per
// case, the IP payload bytes that came out.
func (p *kdPath) runFrag(cases []fragCase, frames [][][]byte, wait time.Duration) []int {
	got := make([]int, len(cases))
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.side[1].receive(stop, func(f []byte) {
			if m := marker(f); m >= 1 && m <= len(cases) {
				mu.Lock()
				got[m-1] += ipPayloadLen(f)
				mu.Unlock()
			}
		})
	}()
	for i := range cases {
		for _, f := range frames[i] {
			_ = p.side[0].send(f)
		}
		time.Sleep(wait)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	return got
}

// TestKernelFragments: the datagram fates, kernel against dpfw.
func TestKernelFragments(t *testing.T) {
	requireDPDK(t)
	frames := make([][][]byte, len(fragCases))
	for i, c := range fragCases {
		frames[i] = fragFrames(c, uint16(i+1), uint16(20000+i))
	}
	k, _ := kernelPath(t, kdNftRules)
	d, p := dpfwPath(t, kdDpfwRules)
	var kres, dres []int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); kres = k.runFrag(fragCases, frames, 40*time.Millisecond) }()
	go func() { defer wg.Done(); dres = d.runFrag(fragCases, frames, 40*time.Millisecond) }()
	wg.Wait()
	fate := func(c fragCase, n int) string {
		switch {
		case n == 0:
			return "nothing"
		case n == c.size:
			return "the datagram"
		case n > c.size:
			return fmt.Sprintf("the datagram and %d bytes more", n-c.size)
		}
		return fmt.Sprintf("%d of its %d bytes", n, c.size)
	}
	names := map[string]bool{}
	for _, c := range fragCases {
		names[c.name] = true
	}
	for n := range fragKnown {
		if !names[n] {
			t.Errorf("fragKnown names %q, which is no case", n)
		}
	}
	agree, known := 0, 0
	for i, c := range fragCases {
		sent := 0
		for _, pt := range c.parts {
			sent += pt[1]
		}
		if kres[i] > max(sent, c.size) || dres[i] > sent {
			t.Errorf("%s: more bytes out than sent (kernel %d, dpfw %d of %d)", c.name, kres[i], dres[i], sent)
		}
		kf, df := fate(c, kres[i]), fate(c, dres[i])
		switch _, isKnown := fragKnown[c.name]; {
		case kf == df:
			agree++
			if isKnown && fragKnown[c.name] != "" {
				t.Logf("%s: dpfw now agrees with the kernel (%s); remove it from fragKnown", c.name, kf)
			}
		case isKnown:
			known++
			t.Logf("%s: kernel forwards %s, dpfw %s (known: %s)", c.name, kf, df, fragKnown[c.name])
		default:
			t.Errorf("%s: kernel forwards %s, dpfw %s", c.name, kf, df)
		}
	}
	t.Logf("fragments: %d datagrams, %d the same as the kernel, %d known differences", len(fragCases), agree, known)
	p.stop()
}
