package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
)

// syncLink is a sync link between a dpfw node's namespace and a Linux
// firewall's: a veth pair, 198.18.9.1 (dpfw) and 198.18.9.2 (the peer).
type syncLink struct {
	dpfw, peer       netns
	dpfwIf, peerIf   string
	dpfwAddr, peerIP string
}

func newSyncLink(t *testing.T) *syncLink {
	t.Helper()
	id := os.Getpid() % 100000
	l := &syncLink{dpfw: newNetns(t, fmt.Sprintf("dpfwt-y%d", id)), peer: newNetns(t, fmt.Sprintf("dpfwt-k%d", id)),
		dpfwIf: fmt.Sprintf("sy%d", id), peerIf: fmt.Sprintf("sk%d", id), dpfwAddr: "198.18.9.1", peerIP: "198.18.9.2"}
	mustRun(t, "ip", "link", "add", l.dpfwIf, "netns", string(l.dpfw), "type", "veth", "peer", "name", l.peerIf, "netns", string(l.peer))
	for _, s := range []struct {
		ns          netns
		iface, addr string
	}{{l.dpfw, l.dpfwIf, l.dpfwAddr}, {l.peer, l.peerIf, l.peerIP}} {
		mustRun(t, "ip", "-n", string(s.ns), "addr", "add", s.addr+"/24", "dev", s.iface)
		mustRun(t, "ip", "-n", string(s.ns), "link", "set", s.iface, "up")
		mustRun(t, "ip", "-n", string(s.ns), "link", "set", "lo", "up")
	}
	return l
}

// udpFlows sends one datagram from each of DPFW_E2E_COUNT source ports
// (30000 on: distinct, where the kernel's ephemeral ones could repeat)
// to DPFW_E2E_ADDR: as many UDP connections.
func udpFlows() int {
	n, _ := strconv.Atoi(os.Getenv("DPFW_E2E_COUNT"))
	to, err := net.ResolveUDPAddr("udp", os.Getenv("DPFW_E2E_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range n {
		c, err := net.DialUDP("udp", &net.UDPAddr{Port: 30000 + i}, to)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		_, _ = c.Write([]byte{byte(i)})
		c.Close()
	}
	return 0
}

// ftpPasv logs in to the FTP server DPFW_E2E_ADDR anonymously, asks for
// a passive data connection, prints "pasv PORT", waits for the file
// DPFW_E2E_GO to exist, then opens the data connection, fetches
// DPFW_E2E_FILE and prints its length and sha256. Bounded: 40 s.
func ftpPasv() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, err); return 1 }
	c, err := net.DialTimeout("tcp", os.Getenv("DPFW_E2E_ADDR"), 5*time.Second)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(40 * time.Second))
	tc := textproto.NewConn(c)
	if _, _, err := tc.ReadResponse(220); err != nil {
		return fail(err)
	}
	for _, step := range []struct {
		cmd  string
		code int
	}{{"USER anonymous", 230}, {"TYPE I", 200}} {
		if _, err := tc.Cmd("%s", step.cmd); err != nil {
			return fail(err)
		}
		if _, _, err := tc.ReadResponse(step.code); err != nil {
			return fail(fmt.Errorf("%s: %w", step.cmd, err))
		}
	}
	if _, err := tc.Cmd("PASV"); err != nil {
		return fail(err)
	}
	_, msg, err := tc.ReadResponse(227)
	if err != nil {
		return fail(err)
	}
	var h [6]int
	if _, err := fmt.Sscanf(msg[strings.Index(msg, "(")+1:], "%d,%d,%d,%d,%d,%d", &h[0], &h[1], &h[2], &h[3], &h[4], &h[5]); err != nil {
		return fail(fmt.Errorf("PASV answer %q: %w", msg, err))
	}
	port := h[4]<<8 | h[5]
	fmt.Printf("pasv %d\n", port)
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(os.Getenv("DPFW_E2E_GO")); err == nil {
			break
		} else if time.Now().After(end) {
			return fail(errors.New("never told to go on"))
		}
	}
	data, err := net.DialTimeout("tcp", fmt.Sprintf("%d.%d.%d.%d:%d", h[0], h[1], h[2], h[3], port), 20*time.Second)
	if err != nil {
		return fail(err)
	}
	defer data.Close()
	_ = data.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := tc.Cmd("RETR %s", os.Getenv("DPFW_E2E_FILE")); err != nil {
		return fail(err)
	}
	if _, _, err := tc.ReadResponse(150); err != nil {
		return fail(err)
	}
	sum := sha256.New()
	nb, err := io.Copy(sum, data)
	if err != nil {
		return fail(err)
	}
	if _, _, err := tc.ReadResponse(226); err != nil {
		return fail(err)
	}
	fmt.Printf("%d %x\n", nb, sum.Sum(nil))
	return 0
}

// udpEcho answers every datagram on DPFW_E2E_ADDR with itself, for 30 s.
func udpEcho() int {
	c, err := net.ListenPacket("udp", os.Getenv("DPFW_E2E_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	fmt.Println("listening")
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return 0
		}
		_, _ = c.WriteTo(buf[:n], from)
	}
}

// udpPing sends DPFW_E2E_COUNT datagrams to DPFW_E2E_ADDR from one port,
// one every 100 ms, and prints how many answers came back.
func udpPing() int {
	n, _ := strconv.Atoi(os.Getenv("DPFW_E2E_COUNT"))
	c, err := net.Dial("udp", os.Getenv("DPFW_E2E_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	got, buf := 0, make([]byte, 2048)
	for i := range n {
		next := time.Now().Add(100 * time.Millisecond)
		_, _ = c.Write([]byte{byte(i)})
		_ = c.SetReadDeadline(next)
		if k, err := c.Read(buf); err == nil && k == 1 && buf[0] == byte(i) {
			got++
		}
		time.Sleep(time.Until(next))
	}
	fmt.Println(got)
	return 0
}

// lossy makes both ends of the sync link drop one in every `every` of
// the sync datagrams they send, at random (an nftables numgen rule in
// each namespace: this kernel has no netem).
func (l *syncLink) lossy(t *testing.T, every int) {
	t.Helper()
	rule := fmt.Sprintf("table inet loss {\n chain out {\n  type filter hook output priority 0;\n  udp dport 3780 numgen random mod %d == 0 counter drop\n }\n}\n", every)
	for _, ns := range []netns{l.dpfw, l.peer} {
		cmd := ns.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rule)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft in %s: %v\n%s", ns, err, out)
		}
	}
}

// dropped is how many sync datagrams lossy dropped in ns.
func (l *syncLink) dropped(t *testing.T, ns netns) int {
	t.Helper()
	out, _ := ns.Command("nft", "list", "table", "inet", "loss").CombinedOutput()
	m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("nft list in %s:\n%s", ns, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// configure points dpfw's sync at the link.
func (l *syncLink) configure(c *config.Config) {
	c.Sync.Mode, c.Sync.Netns, c.Sync.Interface = "notrack", string(l.dpfw), l.dpfwIf
	c.Sync.Local, c.Sync.Peer = l.dpfwAddr+":3780", l.peerIP+":3780"
}

// conntrackd is Debian's conntrackd in the peer's namespace, in NOTRACK
// mode over UDP to dpfw, asking for a resync when it starts.
type conntrackd struct {
	l    *syncLink
	dir  string
	cmd  *exec.Cmd
	out  e2e.Buffer
	done chan struct{}
}

func startConntrackd(t *testing.T, l *syncLink, dir string) *conntrackd {
	t.Helper()
	return startConntrackdMode(t, l, dir, "NOTRACK {\n\t\tStartupResync on\n\t}")
}

// startConntrackdMode starts conntrackd with the given Mode block, over
// UDP unicast to dpfw.
func startConntrackdMode(t *testing.T, l *syncLink, dir, mode string) *conntrackd {
	t.Helper()
	return startConntrackdConf(t, l, dir, mode, l.udpTransport())
}

// udpTransport is conntrackd's UDP block for the link, to dpfw.
func (l *syncLink) udpTransport() string {
	return fmt.Sprintf(`UDP {
		IPv4_address %s
		IPv4_Destination_Address %s
		Port 3780
		Interface %s
		Checksum on
	}`, l.peerIP, l.dpfwAddr, l.peerIf)
}

// startConntrackdConf starts conntrackd with the given Mode block and
// transport block (UDP or Multicast).
func startConntrackdConf(t *testing.T, l *syncLink, dir, mode, transport string) *conntrackd {
	t.Helper()
	conf := fmt.Sprintf(`Sync {
	Mode %s
	%s
}
General {
	HashSize 8192
	HashLimit 65536
	LogFile %s/conntrackd.log
	Syslog off
	LockFile %s/conntrackd.lock
	UNIX {
		Path %s/conntrackd.sock
	}
	NetlinkBufferSize 2097152
	NetlinkBufferSizeMaxGrowth 8388608
}
`, mode, transport, dir, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "conntrackd.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(dir, "conntrackd.lock"))
	c := &conntrackd{l: l, dir: dir, done: make(chan struct{})}
	c.cmd = l.peer.Command("conntrackd", "-C", filepath.Join(dir, "conntrackd.conf"))
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := c.ctl("-s"); err == nil {
			return c
		}
		if time.Now().After(end) {
			t.Fatalf("conntrackd did not start:\n%s", c.out.String())
		}
	}
}

// ctl runs conntrackd's client against the daemon (-e, -s, -c, …).
func (c *conntrackd) ctl(args ...string) (string, error) {
	out, err := c.l.peer.Command("conntrackd", append([]string{"-C", filepath.Join(c.dir, "conntrackd.conf")}, args...)...).CombinedOutput()
	return string(out), err
}

func (c *conntrackd) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

// ctKey is the part of a conntrack -L, conntrackd -e or dpfw line that
// both sides must agree on: protocol, TCP state, the original tuple, and
// whether the connection is unreplied or assured (conntrackd -e prints
// neither the timeout nor the reply tuple).
func ctKey(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return ""
	}
	out := []string{f[0]}
	tuples := 0 // the original tuple's fields only: up to the second src=
	for _, w := range f[2:] {
		k, _, isKV := strings.Cut(w, "=")
		if k == "src" {
			tuples++
		}
		switch {
		case tcpStateRE.MatchString(w):
			out = append(out, w)
		case isKV && tuples == 1 && slices.Contains([]string{"src", "dst", "sport", "dport", "type", "code", "id"}, k):
			out = append(out, w)
		case w == "[UNREPLIED]" || w == "[ASSURED]":
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

var tcpStateRE = regexp.MustCompile(`^(SYN_SENT|SYN_RECV|ESTABLISHED|FIN_WAIT|CLOSE_WAIT|LAST_ACK|TIME_WAIT|CLOSE|SYN_SENT2)$`)

// keys is the ctKey of each line of out that has one.
func keys(out string) []string {
	var ks []string
	for _, l := range strings.Split(out, "\n") {
		if k := ctKey(l); strings.Contains(k, "src=") {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}

// waitKeys polls list until its keys include every one of want.
func waitKeys(t *testing.T, what string, list func() string, want []string) string {
	t.Helper()
	var out string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out = list()
		got := keys(out)
		if !slices.ContainsFunc(want, func(k string) bool { return !slices.Contains(got, k) }) {
			return out
		}
		if time.Now().After(end) {
			t.Fatalf("%s: want\n  %s\ngot\n%s", what, strings.Join(want, "\n  "), out)
		}
	}
}

// TestSyncConntrackd pairs dpfw with Debian's conntrackd (NOTRACK over
// UDP, kernel conntrack in its namespace), both ways:
//   - connections in that kernel before dpfw starts reach dpfw's external
//     cache when dpfw asks for a resync at start, and later ones through
//     conntrackd's events, with the tuple, state, flags and timeout
//     conntrack -L shows;
//   - connections through dpfw (a TCP transfer, a ping) appear in
//     conntrackd's external cache (conntrackd -e) as dpfw lists them,
//     and committed to that kernel (conntrackd -c) conntrack -L shows
//     them with dpfw's state and timeout;
//   - a conntrackd that restarts (caches empty) asks for a resync and
//     gets dpfw's connections again.
func TestSyncConntrackd(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "conntrackd")
	requireTool(t, "conntrack")
	l := newSyncLink(t)
	dir := t.TempDir()
	kernel := []string{
		"-p tcp -s 198.18.3.1 -d 198.18.4.1 --sport 40001 --dport 443 --state ESTABLISHED -t 3000 -u SEEN_REPLY,ASSURED",
		"-p udp -s 2001:2::5 -d 2001:2::6 --sport 5353 --dport 53 -t 50",
	}
	for _, e := range kernel {
		mustRun(t, "ip", append([]string{"netns", "exec", string(l.peer), "conntrack", "-I"}, strings.Fields(e)...)...)
	}
	ctd := startConntrackd(t, l, dir)
	p, cns, sns := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, statefulRules, "")
		l.configure(c)
		c.Sync.Refresh = 8 * time.Second
	})
	peerList := func() string { return mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-L") }
	external := func() string { out, _ := p.cli("ha", "external"); return out }
	// The resync at start brings the kernel's entries, before dpfw
	// reports ready (tapPair waited for its ready file).
	want := keys(peerList())
	if len(want) != 2 {
		t.Fatalf("the peer's kernel lists %v", want)
	}
	if got := keys(external()); !slices.Equal(got, want) {
		t.Errorf("dpfw's external cache once dpfw is ready: %v; want the peer's %v", got, want)
	}
	if !p.waitLog("the peer's resync is in", time.Second) {
		t.Errorf("dpfw did not log that the peer's resync is in")
	}

	// Later entries come with conntrackd's events; timeouts are the kernel's.
	mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-I", "-p", "icmp", "-s", "198.18.3.2", "-d", "198.18.4.1",
		"--icmp-type", "8", "--icmp-code", "0", "--icmp-id", "99", "-t", "25")
	kern := peerList()
	ext := waitKeys(t, "dpfw's external cache after an event", external, keys(kern))
	checkTimeouts(t, "dpfw's external cache", ext, kern)

	// dpfw's connections reach conntrackd.
	startHelper(t, sns, "198.18.0.2:5001")
	if got, err := fetch(cns, "198.18.0.2:5001"); err != nil || got != expectedDigest() {
		t.Fatalf("transfer: %v %q", err, got)
	}
	if out, err := cns.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	mine, err := p.cli("conntrack", "list")
	if err != nil {
		t.Fatal(err)
	}
	ours := keys(mine)
	if len(ours) != 2 {
		t.Fatalf("dpfw lists %v; want the TCP connection and the ping", ours)
	}
	ctlList := func() string { out, _ := ctd.ctl("-e"); return out }
	waitKeys(t, "conntrackd -e", ctlList, ours)
	if out, err := ctd.ctl("-c"); err != nil {
		t.Fatalf("conntrackd -c: %v\n%s", err, out)
	}
	committed := waitKeys(t, "the peer's kernel after conntrackd -c", peerList, ours)
	mine, _ = p.cli("conntrack", "list")
	t.Logf("dpfw's connections:\n%s\ncommitted to the peer's kernel:\n%s", mine, committed)
	checkTimeouts(t, "the peer's kernel", committed, mine)

	// A conntrackd that restarts asks for everything again.
	dumps := p.metric("dpfw_sync_dumps_sent_total")
	ctd.stop()
	ctd = startConntrackd(t, l, dir)
	waitKeys(t, "conntrackd -e after its restart", ctlList, ours)
	if got := p.metric("dpfw_sync_dumps_sent_total"); got <= dumps {
		t.Errorf("dumps sent: %v before the restart, %v after", dumps, got)
	}
	status, err := p.cli("ha", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dpfw ha status:\n%s", status)
	for _, bad := range []string{"messages_lost", "events_lost", "send_errors", "foreign_datagrams"} {
		if !strings.Contains(status, bad+"=0") {
			t.Errorf("dpfw ha status: want %s=0\n%s", bad, status)
		}
	}
	if !regexp.MustCompile(`malformed: (\w+=0 ?)+\nrefused: (\w+=0 ?)+\n`).MatchString(status) {
		t.Errorf("dpfw ha status: malformed or refused messages\n%s", status)
	}
	// The refresh dumps every connection again (sync.refresh).
	refreshed := p.metric("dpfw_sync_dumps_sent_total")
	if got := p.waitMetric("dpfw_sync_dumps_sent_total", "", refreshed+1, 12*time.Second); got < refreshed+1 {
		t.Errorf("no refresh dump in 12 s with sync.refresh 8s: %v dumps", got)
	}
	p.stop()
}

// checkTimeouts checks that the timeouts in got (conntrack -L lines)
// match those of the same connections in want, within 5 seconds.
func checkTimeouts(t *testing.T, what, got, want string) {
	t.Helper()
	timeouts := func(out string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 {
				if n, err := strconv.Atoi(f[2]); err == nil {
					m[ctKey(l)] = n
				}
			}
		}
		return m
	}
	g, w := timeouts(got), timeouts(want)
	for k, wt := range w {
		if gt, ok := g[k]; ok && (gt < wt-5 || gt > wt+5) {
			t.Errorf("%s: %s has timeout %d; want %d", what, k, gt, wt)
		}
	}
}

// haPair is two dpfw nodes side by side between a client and a server:
// each side's namespace bridges both nodes' taps (198.18.0.1 on the
// client's bridge, 198.18.0.2 on the server's), and the nodes' sync
// sockets face each other on a sync link. Only the active node forwards
// (the backup drops every frame), so the bridges see one path at a time.
type haPair struct {
	a, b     *proc
	cns, sns netns
	link     *syncLink
}

// startHAPair starts node a (active) and b (backup), each with the
// stateful rules, tcp_loose off, and its own changes.
func startHAPair(t *testing.T, l *syncLink, changeA, changeB func(*config.Config)) *haPair {
	t.Helper()
	id := os.Getpid() % 100000
	h := &haPair{link: l, cns: newNetns(t, fmt.Sprintf("dpfwt-c%d", id)), sns: newNetns(t, fmt.Sprintf("dpfwt-s%d", id))}
	// Each bridge gets an address of its own: by default a bridge takes
	// its ports' lowest, and would change it when a node's port goes,
	// leaving the other side's ARP cache pointing nowhere.
	for _, s := range []struct {
		ns        netns
		addr, mac string
	}{{h.cns, "198.18.0.1/24", "02:18:00:00:00:01"}, {h.sns, "198.18.0.2/24", "02:18:00:00:00:02"}} {
		mustRun(t, "ip", "-n", string(s.ns), "link", "add", "br0", "address", s.mac, "type", "bridge")
		mustRun(t, "ip", "-n", string(s.ns), "addr", "add", s.addr, "dev", "br0")
		mustRun(t, "ip", "-n", string(s.ns), "link", "set", "br0", "up")
		mustRun(t, "ip", "-n", string(s.ns), "link", "set", "lo", "up")
	}
	for i, change := range []func(*config.Config){changeA, changeB} {
		node := string(rune('a' + i))
		out, in := fmt.Sprintf("ha%d%so", id, node), fmt.Sprintf("ha%d%si", id, node)
		cfg := e2e.Base()
		e2e.TapPair(&cfg, out, in)
		e2e.Iptables(&cfg, statefulRules, "")
		cfg.Conntrack.TCPLoose = false
		change(&cfg)
		p := startDPFW(t, cfg)
		for _, s := range []struct {
			ns    netns
			iface string
		}{{h.cns, out}, {h.sns, in}} {
			mustRun(t, "ip", "link", "set", s.iface, "netns", string(s.ns))
			mustRun(t, "ip", "-n", string(s.ns), "link", "set", s.iface, "master", "br0")
			mustRun(t, "ip", "-n", string(s.ns), "link", "set", s.iface, "up")
		}
		if i == 0 {
			h.a = p
		} else {
			h.b = p
		}
	}
	return h
}

// syncNode configures a node of the pair: its side of the sync link, its
// role.
func (l *syncLink) syncNode(c *config.Config, first bool, role string) {
	ns, iface, local, peer := l.dpfw, l.dpfwIf, l.dpfwAddr, l.peerIP
	if !first {
		ns, iface, local, peer = l.peer, l.peerIf, l.peerIP, l.dpfwAddr
	}
	c.Sync.Mode, c.Sync.Role, c.Sync.Netns, c.Sync.Interface = "notrack", role, string(ns), iface
	c.Sync.Local, c.Sync.Peer = local+":3780", peer+":3780"
}

// download starts a paced 10 MB download from the server (sent over
// about pace) and returns what the client ends with.
func (h *haPair) download(t *testing.T, pace time.Duration) <-chan string {
	t.Helper()
	startHelperMode(t, h.sns, "tcp-server", "198.18.0.2:5001", "DPFW_E2E_PACE="+pace.String())
	cli := h.cns.Command(os.Args[0])
	cli.Env = append(os.Environ(), "DPFW_E2E_HELPER=tcp-client", "DPFW_E2E_ADDR=198.18.0.2:5001")
	exited, out := background(t, cli)
	done := make(chan string, 1)
	go func() { <-exited; done <- strings.TrimSpace(out.String()) }()
	return done
}

// TestHAFailover: a download through node a, with tcp_loose off on both
// nodes; a is killed (SIGKILL) mid-transfer; b, a backup that has been
// forwarding nothing, promotes itself when a's heartbeats stop
// (sync.failover_after) and installs the connection a synced, and the
// download completes with the right sha256. Without the sync (a does not
// sync, b is promoted by hand after the kill), the same download stalls:
// b sees the server's mid-stream segments as INVALID.
func TestHAFailover(t *testing.T) {
	requireDPDK(t)
	t.Run("synced", func(t *testing.T) {
		// Authenticated (sync.key_file), as two dpfw nodes can be.
		l := newSyncLink(t)
		key := filepath.Join(t.TempDir(), "sync.key")
		if err := os.WriteFile(key, []byte("dpfw test key: 198.18.9.0/24 sync link\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h := startHAPair(t, l, func(c *config.Config) { l.syncNode(c, true, "active"); c.Sync.KeyFile = key },
			func(c *config.Config) {
				l.syncNode(c, false, "backup")
				c.Sync.FailoverAfter, c.Sync.KeyFile = 2*time.Second, key
			})
		failover(t, h, true)
	})
	t.Run("ftp", func(t *testing.T) {
		l := newSyncLink(t)
		h := startHAPair(t, l, func(c *config.Config) { e2e.Iptables(c, ftpHARules, ""); l.syncNode(c, true, "active") },
			func(c *config.Config) {
				e2e.Iptables(c, ftpHARules, "")
				l.syncNode(c, false, "backup")
				c.Sync.FailoverAfter = 2 * time.Second
			})
		ftpFailover(t, h)
	})
	t.Run("unsynced", func(t *testing.T) {
		l := newSyncLink(t)
		h := startHAPair(t, l, func(c *config.Config) {},
			func(c *config.Config) { l.syncNode(c, false, "backup"); c.Sync.FailoverAfter = 0 })
		failover(t, h, false)
	})
}

// failover runs the download, kills node a once it is under way, and
// checks how node b carries on.
func failover(t *testing.T, h *haPair, synced bool) {
	t.Helper()
	if got := h.b.metric("dpfw_sync_standby"); got != 1 {
		t.Fatalf("backup b: dpfw_sync_standby %v", got)
	}
	done := h.download(t, 6*time.Second)
	if got := h.a.waitMetric("dpfw_worker_tx_packets_total", "", 300, 10*time.Second); got < 300 {
		t.Fatalf("the download does not go through a: %v packets\n%s", got, h.a.dump())
	}
	if synced {
		re := regexp.MustCompile(`^tcp .* ESTABLISHED src=198\.18\.0\.1 dst=198\.18\.0\.2 sport=\d+ dport=5001 .*\[ASSURED\]`)
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			out, _ := h.b.cli("ha", "external")
			if slices.ContainsFunc(strings.Split(out, "\n"), re.MatchString) {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("b's external cache has no ESTABLISHED download:\n%s", out)
			}
		}
	}
	h.a.Kill() // SIGKILL: its taps go, and with them the bridges' path through a
	killed := time.Now()
	if !synced {
		time.Sleep(500 * time.Millisecond)
		if out, err := h.b.cli("ha", "promote"); err != nil {
			t.Fatalf("dpfw ha promote: %v\n%s", err, out)
		}
		select {
		case got := <-done:
			t.Fatalf("the download ended without sync: %q", got)
		case <-time.After(6 * time.Second):
		}
		if n := h.b.metric("dpfw_worker_dropped_packets_total", `reason="ct_invalid"`); n < 1 {
			t.Errorf("b dropped %v packets as INVALID; want the server's mid-stream segments", n)
		}
		return
	}
	select {
	case got := <-done:
		if got != expectedDigest() {
			t.Fatalf("the download after the failover: %q; want %q\n%s", got, expectedDigest(), h.b.dump())
		}
	case <-time.After(25 * time.Second):
		list, _ := h.b.cli("conntrack", "list")
		var links []string
		for _, ns := range []netns{h.cns, h.sns} {
			out, _ := exec.Command("ip", "-n", string(ns), "-br", "link").CombinedOutput()
			fdb, _ := exec.Command("bridge", "-n", string(ns), "fdb", "show", "br", "br0").CombinedOutput()
			links = append(links, string(out)+string(fdb))
		}
		t.Fatalf("the download did not finish after the failover; b's connections:\n%s\nlinks:\n%s\n%s", list, strings.Join(links, "\n"), h.b.dump())
	}
	t.Logf("the download completed %s after a was killed", time.Since(killed).Round(time.Millisecond))
	if p := h.b.metric("dpfw_sync_promotions_total"); p != 1 || h.b.metric("dpfw_sync_installed_total") < 1 {
		t.Errorf("b: %v promotions, %v connections installed", p, h.b.metric("dpfw_sync_installed_total"))
	}
	if n := h.b.metric("dpfw_worker_dropped_packets_total", `reason="ct_invalid"`); n != 0 {
		t.Errorf("b dropped %v packets as INVALID after taking over", n)
	}
	if bad, stale := h.b.metric("dpfw_sync_auth_bad_total"), h.b.metric("dpfw_sync_auth_stale_total"); bad+stale != 0 {
		t.Errorf("b refused %v datagrams as unauthenticated and %v as stale", bad, stale)
	}
	h.b.stop()
}

// TestSyncFTFWLossy pairs dpfw and conntrackd in FTFW mode over a sync
// link that loses one in five of the datagrams each side sends: 300 connections
// made in conntrackd's kernel all reach dpfw's external cache, and 300 UDP
// connections through dpfw all reach conntrackd's (counted on both
// sides), FTFW's NACKs and resends making up for the losses.
func TestSyncFTFWLossy(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "conntrackd")
	requireTool(t, "conntrack")
	requireTool(t, "nft")
	l := newSyncLink(t)
	l.lossy(t, 5)
	dir := t.TempDir()
	ctd := startConntrackdMode(t, l, dir, "FTFW {\n\t}")
	p, cns, _ := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, "-P INPUT DROP\n-A INPUT -m state --state NEW,ESTABLISHED,RELATED -j ACCEPT\n", "")
		l.configure(c)
		c.Sync.Mode = "ftfw"
	})
	// FTFW is reliable once both HELLO handshakes are done (until then a
	// receiver takes the sender's numbers afresh, and conntrackd forgets
	// its resend queue).
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if status, _ := p.cli("ha", "status"); strings.Contains(status, "FTFW handshake: done") {
			break
		} else if time.Now().After(end) {
			t.Fatalf("no FTFW handshake:\n%s", status)
		}
	}
	const n = 300
	for i := range n {
		mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-I", "-p", "tcp", "-s", "198.18.3.1", "-d", "198.18.4.1",
			"--sport", strconv.Itoa(20000+i), "--dport", "443", "--state", "ESTABLISHED", "-t", "3000", "-u", "SEEN_REPLY,ASSURED")
	}
	count := func(out, match string) int { return strings.Count(out, match) }
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := p.cli("ha", "external")
		if got := count(out, "dport=443"); got == n {
			break
		} else if time.Now().After(end) {
			status, _ := p.cli("ha", "status")
			t.Fatalf("dpfw's external cache has %d of the %d connections made in the peer's kernel\n%s", got, n, status)
		}
	}
	flows := cns.Command(os.Args[0])
	flows.Env = append(os.Environ(), "DPFW_E2E_HELPER=udp-flows", "DPFW_E2E_ADDR=198.18.0.2:9", fmt.Sprintf("DPFW_E2E_COUNT=%d", n))
	if out, err := flows.CombinedOutput(); err != nil {
		t.Fatalf("udp flows: %v\n%s", err, out)
	}
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, _ := ctd.ctl("-e")
		if got := count(out, "dport=9 "); got == n {
			break
		} else if time.Now().After(end) {
			status, _ := p.cli("ha", "status")
			t.Fatalf("conntrackd's external cache has %d of the %d connections through dpfw\n%s", got, n, status)
		}
	}
	status, _ := p.cli("ha", "status")
	t.Logf("datagrams dropped: %d from dpfw, %d from conntrackd; dpfw ha status:\n%s", l.dropped(t, l.dpfw), l.dropped(t, l.peer), status)
	if m := p.metric("dpfw_sync_nacks_sent_total") + p.metric("dpfw_sync_messages_resent_total"); m == 0 || l.dropped(t, l.dpfw) == 0 || l.dropped(t, l.peer) == 0 {
		t.Errorf("no NACKs or resends over a lossy link: the test did not exercise FTFW\n%s", status)
	}
	p.stop()
}

// ftpHARules let the client open FTP control connections to the server,
// and everything else only as ESTABLISHED or RELATED: a passive data
// connection passes only as the expectation it was announced as.
const ftpHARules = establishedRules + `-A INPUT -p tcp --dport 21 -s 198.18.0.1 -m state --state NEW -j ACCEPT
`

// ftpFile writes a file of size bytes for vsftpd to serve, into a
// directory of its own, and returns the directory and what the ftp-pasv
// helper prints for it ("LEN SHA256").
func ftpFile(t *testing.T, size int) (dir, want string) {
	t.Helper()
	dir = t.TempDir()
	content := make([]byte, size)
	_, _ = io.ReadFull(newDataSource(), content)
	if err := os.WriteFile(filepath.Join(dir, "file.bin"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, fmt.Sprintf("%d %x", len(content), sha256.Sum256(content))
}

// pasvClient is the ftp-pasv helper in a namespace: logged in to the FTP
// server 198.18.0.2:21, it has asked for a passive data connection to
// port and waits for fetch to open it and retrieve file.bin.
type pasvClient struct {
	goFile, port string
	done         <-chan error
	out          *e2e.Buffer
}

// startPasv starts the ftp-pasv helper in ns and waits for the PASV
// answer; where names the path in the failure, with dump's text.
func startPasv(t *testing.T, ns netns, where string, dump func() string) *pasvClient {
	t.Helper()
	c := &pasvClient{goFile: filepath.Join(t.TempDir(), "go")}
	cli := ns.Command(os.Args[0])
	cli.Env = append(os.Environ(), "DPFW_E2E_HELPER=ftp-pasv", "DPFW_E2E_ADDR=198.18.0.2:21", "DPFW_E2E_FILE=file.bin", "DPFW_E2E_GO="+c.goFile)
	c.done, c.out = background(t, cli)
	for end := time.Now().Add(10 * time.Second); !strings.Contains(c.out.String(), "pasv "); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no PASV answer %s: %s\n%s", where, c.out.String(), dump())
		}
	}
	c.port = strings.Fields(c.out.String()[strings.Index(c.out.String(), "pasv "):])[1]
	return c
}

// fetch lets the client open the data connection.
func (c *pasvClient) fetch(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(c.goFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// last is the client's last line (what it printed for the file).
func (c *pasvClient) last() string {
	o := strings.TrimSpace(c.out.String())
	return o[strings.LastIndex(o, "\n")+1:]
}

// ftpFailover: an FTP client logs in through node a and asks for a
// passive data connection (an expectation on a, synced to b); a is killed;
// once b has taken over, the client opens the data connection, which b
// lets through as RELATED, and the file arrives whole.
func ftpFailover(t *testing.T, h *haPair) {
	t.Helper()
	dir, want := ftpFile(t, 1<<20)
	startVsftpd(t, h.sns, dir)
	c := startPasv(t, h.cns, "through a", h.a.dump)
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		x, _ := h.b.cli("ha", "external", "--expect")
		if strings.Contains(x, "dst=198.18.0.2") && strings.Contains(x, "master-dst=198.18.0.2 sport=") && strings.Contains(x, "dport=21") {
			break
		} else if time.Now().After(end) {
			t.Fatalf("b has no expectation for the data connection:\n%s", x)
		}
	}
	aStatus, _ := h.a.cli("ha", "status")
	aList, _ := h.a.cli("conntrack", "list")
	bExt, _ := h.b.cli("ha", "external")
	before := "a before the kill:\n" + aStatus + aList + "b's external cache:\n" + bExt
	h.a.Kill()
	for end := time.Now().Add(10 * time.Second); h.b.metric("dpfw_sync_promotions_total") < 1; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("b did not take over\n%s", h.b.dump())
		}
	}
	c.fetch(t)
	select {
	case err := <-c.done:
		if got := c.last(); err != nil || got != want {
			t.Fatalf("the FTP transfer after the failover: %v %q; want %q\n%s", err, got, want, h.b.dump())
		}
	case <-time.After(30 * time.Second):
		list, _ := h.b.cli("conntrack", "list")
		t.Fatalf("the FTP transfer did not finish after the failover\n%s\n%s\nb's connections:\n%s\n%s", c.out.String(), before, list, h.b.dump())
	}
	if n := h.b.metric("dpfw_conntrack_expectations_matched_total"); n < 1 {
		t.Errorf("b matched %v expectations; want the data connection's", n)
	}
	h.b.stop()
}

// aaRules let the client open UDP port 7 and TCP port 5001 on the
// server; replies pass only as ESTABLISHED.
const aaRules = establishedRules + `-A INPUT -p udp --dport 7 -s 198.18.0.1 -m state --state NEW -j ACCEPT
-A INPUT -p tcp --dport 5001 -s 198.18.0.1 -m state --state NEW -j ACCEPT
`

// startAsymmetric starts nodes a and b on an asymmetric path: the
// client's packets to the server go through a, the server's replies
// through b (routes and static neighbours in the end namespaces; no
// bridges, so both nodes forward without a loop).
func startAsymmetric(t *testing.T, l *syncLink, change func(c *config.Config, first bool)) *haPair {
	t.Helper()
	id := os.Getpid() % 100000
	h := &haPair{link: l, cns: newNetns(t, fmt.Sprintf("dpfwt-c%d", id)), sns: newNetns(t, fmt.Sprintf("dpfwt-s%d", id))}
	var taps [2][2]string // node, outside/inside
	for i := range 2 {
		node := string(rune('a' + i))
		taps[i] = [2]string{fmt.Sprintf("aa%d%so", id, node), fmt.Sprintf("aa%d%si", id, node)}
		cfg := e2e.Base()
		e2e.TapPair(&cfg, taps[i][0], taps[i][1])
		e2e.Iptables(&cfg, aaRules, "")
		cfg.Conntrack.TCPLoose = false
		change(&cfg, i == 0)
		p := startDPFW(t, cfg)
		if i == 0 {
			h.a = p
		} else {
			h.b = p
		}
	}
	mac := func(ns netns, iface string) string {
		out, err := ns.Command("cat", "/sys/class/net/"+iface+"/address").Output()
		if err != nil {
			t.Fatalf("%s's address: %v", iface, err)
		}
		return strings.TrimSpace(string(out))
	}
	for _, c := range [][]string{
		{"link", "set", taps[0][0], "netns", string(h.cns)}, {"link", "set", taps[1][0], "netns", string(h.cns)},
		{"link", "set", taps[0][1], "netns", string(h.sns)}, {"link", "set", taps[1][1], "netns", string(h.sns)},
	} {
		mustRun(t, "ip", c...)
	}
	for _, ns := range []netns{h.cns, h.sns} {
		mustRun(t, "ip", "netns", "exec", string(ns), "sysctl", "-q", "-w", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
		mustRun(t, "ip", "-n", string(ns), "link", "set", "lo", "up")
	}
	for _, c := range []struct {
		ns          netns
		iface, addr string
	}{{h.cns, taps[0][0], "198.18.0.1/24"}, {h.cns, taps[1][0], ""}, {h.sns, taps[0][1], "198.18.0.2/24"}, {h.sns, taps[1][1], ""}} {
		mustRun(t, "ip", "netns", "exec", string(c.ns), "sysctl", "-q", "-w", "net.ipv4.conf."+c.iface+".rp_filter=0")
		if c.addr != "" {
			mustRun(t, "ip", "-n", string(c.ns), "addr", "add", c.addr, "dev", c.iface)
		}
		mustRun(t, "ip", "-n", string(c.ns), "link", "set", c.iface, "up")
	}
	// To the server through a; back to the client through b.
	mustRun(t, "ip", "-n", string(h.cns), "neigh", "replace", "198.18.0.2", "lladdr", mac(h.sns, taps[0][1]), "dev", taps[0][0])
	mustRun(t, "ip", "-n", string(h.sns), "route", "add", "198.18.0.1/32", "dev", taps[1][1])
	mustRun(t, "ip", "-n", string(h.sns), "neigh", "replace", "198.18.0.1", "lladdr", mac(h.cns, taps[1][0]), "dev", taps[1][1])
	return h
}

// TestHAActiveActive: with the client's packets through node a and the
// server's replies through node b, both active-active with tcp_loose
// off, a UDP exchange gets its answers (b lets them through as
// ESTABLISHED: it installed a's connection) and a TCP download completes
// with the right sha256 (each node installs the state the other moved
// the connection to). Without the sync, b drops every answer as NEW from
// the inside.
func TestHAActiveActive(t *testing.T) {
	requireDPDK(t)
	for _, synced := range []bool{true, false} {
		t.Run(map[bool]string{true: "synced", false: "unsynced"}[synced], func(t *testing.T) {
			l := newSyncLink(t)
			h := startAsymmetric(t, l, func(c *config.Config, first bool) {
				if synced {
					l.syncNode(c, first, "active-active")
				}
			})
			startHelperMode(t, h.sns, "udp-echo", "198.18.0.2:7")
			ping := h.cns.Command(os.Args[0])
			ping.Env = append(os.Environ(), "DPFW_E2E_HELPER=udp-ping", "DPFW_E2E_ADDR=198.18.0.2:7", "DPFW_E2E_COUNT=20")
			out, err := ping.CombinedOutput()
			if err != nil {
				t.Fatalf("udp ping: %v\n%s", err, out)
			}
			answers, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			if !synced {
				if answers != 0 {
					t.Fatalf("%d answers through b without the sync", answers)
				}
				if n := h.b.metric("dpfw_worker_dropped_packets_total", `reason="rule"`); n < 20 {
					t.Errorf("b dropped %v answers by rule; want 20", n)
				}
				return
			}
			t.Logf("%d of 20 UDP answers came back through b", answers)
			if answers < 18 {
				t.Fatalf("%d of 20 answers through b\n%s", answers, h.b.dump())
			}
			startHelper(t, h.sns, "198.18.0.2:5001")
			if got, err := fetchTimeout(h.cns, "198.18.0.2:5001", 10*time.Second); err != nil || got != expectedDigest() {
				t.Fatalf("TCP download on the asymmetric path: %v %q\na:\n%s\nb:\n%s", err, got, h.a.dump(), h.b.dump())
			}
			for _, p := range []*proc{h.a, h.b} {
				if p.metric("dpfw_sync_installed_total") < 1 {
					t.Errorf("a node installed none of its peer's connections")
				}
			}
			h.a.stop()
			h.b.stop()
		})
	}
}

// TestSyncConntrackdMulticast pairs dpfw with conntrackd over a multicast
// group (conntrackd's Multicast transport, FTFW): the kernel's entry is in
// dpfw's external cache when dpfw reports ready, and dpfw's connection
// reaches conntrackd's.
func TestSyncConntrackdMulticast(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "conntrackd")
	requireTool(t, "conntrack")
	l := newSyncLink(t)
	dir := t.TempDir()
	mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-I", "-p", "tcp", "-s", "198.18.3.1", "-d", "198.18.4.1",
		"--sport", "40001", "--dport", "443", "--state", "ESTABLISHED", "-t", "3000", "-u", "SEEN_REPLY,ASSURED")
	const group = "225.0.0.50"
	ctd := startConntrackdConf(t, l, dir, "FTFW {\n\t\tStartupResync on\n\t}", fmt.Sprintf(`Multicast {
		IPv4_address %s
		Group 3780
		IPv4_interface %s
		Interface %s
		Checksum on
	}`, group, l.peerIP, l.peerIf))
	p, cns, _ := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, statefulRules, "")
		l.configure(c)
		c.Sync.Mode, c.Sync.Multicast = "ftfw", group+":3780"
	})
	want := keys(mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-L"))
	if got, _ := p.cli("ha", "external"); !slices.Equal(keys(got), want) || len(want) != 1 {
		t.Errorf("dpfw's external cache once dpfw is ready: %v; want the peer's %v", keys(got), want)
	}
	if out, err := cns.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	mine, err := p.cli("conntrack", "list")
	if err != nil {
		t.Fatal(err)
	}
	waitKeys(t, "conntrackd -e", func() string { out, _ := ctd.ctl("-e"); return out }, keys(mine))
	status, _ := p.cli("ha", "status")
	if !strings.Contains(status, "via multicast group "+group+":3780") || !strings.Contains(status, "foreign_datagrams=0") {
		t.Errorf("dpfw ha status:\n%s", status)
	}
}

// TestSyncConntrackdExpect: an FTP client asks for a passive data
// connection through dpfw; the expectation dpfw's FTP helper makes reaches
// conntrackd's external expectation cache (conntrackd -e expect, with
// ExpectationSync on), and the transfer completes.
func TestSyncConntrackdExpect(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "conntrackd")
	requireTool(t, "vsftpd")
	l := newSyncLink(t)
	dir := t.TempDir()
	ctd := startConntrackdConf(t, l, dir, "NOTRACK {\n\t\tStartupResync on\n\t}", l.udpTransport()+`
	Options {
		ExpectationSync On
	}`)
	p, cns, sns := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, ftpHARules, "")
		l.configure(c)
	})
	files, want := ftpFile(t, 64<<10)
	startVsftpd(t, sns, files)
	c := startPasv(t, cns, "through dpfw", p.dump)
	port := c.port
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		x, _ := ctd.ctl("-e", "expect")
		if strings.Contains(x, "dst=198.18.0.2") && strings.Contains(x, "dport="+port) && strings.Contains(x, "dport=21") {
			t.Logf("conntrackd -e expect:\n%s", x)
			break
		} else if time.Now().After(end) {
			mine, _ := p.cli("conntrack", "expect")
			t.Fatalf("conntrackd has no expectation for the data connection to port %s:\n%s\ndpfw's:\n%s\n%s", port, x, mine, ctd.out.String())
		}
	}
	c.fetch(t)
	select {
	case err := <-c.done:
		if got := c.last(); err != nil || got != want {
			t.Fatalf("the FTP transfer: %v %q; want %q", err, got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the FTP transfer did not finish\n%s", c.out.String())
	}

	// The other way: an FTP session in the peer's own kernel (its FTP
	// helper assigned by nftables) makes an expectation there, which
	// conntrackd sends and dpfw's external cache takes.
	mustRun(t, "ip", "-n", string(l.peer), "addr", "add", "198.18.0.2/32", "dev", "lo")
	nft := l.peer.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(`table inet dpfwtest {
	ct helper ftp-std { type "ftp" protocol tcp; }
	chain out { type filter hook output priority 0; tcp dport 21 ct helper set "ftp-std"; }
}
`)
	if b, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, b)
	}
	startVsftpd(t, l.peer, files)
	k := startPasv(t, l.peer, "in the peer's namespace", func() string { return "" })
	kport := k.port
	kernel := mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-L", "expect")
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		x, _ := p.cli("ha", "external", "--expect")
		if strings.Contains(x, "dport="+kport) && strings.Contains(x, "master-dst=198.18.0.2") && strings.Contains(x, "dport=21") {
			t.Logf("the peer kernel's expectation:\n%sdpfw ha external --expect:\n%s", kernel, x)
			break
		} else if time.Now().After(end) {
			t.Fatalf("dpfw's external cache has no expectation for port %s:\n%s\nthe peer's kernel:\n%s", kport, x, kernel)
		}
	}
	k.fetch(t)
	select {
	case <-k.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the peer's FTP transfer did not finish\n%s", k.out.String())
	}
}
