package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
)

// The timeout differential: connections left in each state netfilter
// times differently (handshake steps, established, data unacknowledged,
// closing, reset, crossed out-of-window RSTs and FINs, UDP one way and both
// ways, ICMP), sent through the kernel's conntrack and through dpfw; then
// each connection's remaining timeout as `conntrack -L` and `dpfw
// conntrack list` print it. They must agree to within a few seconds (the
// two paths run side by side), or the difference is listed.

// timeoutCase builds one connection; its A port names it. later, if set,
// sends more of it 2.2 s after the first frames (past UDP's 2-s stream
// mark).
type timeoutCase struct {
	name  string
	build func(b *kdBuilder, f kdFlow)
	later func(b *kdBuilder, f kdFlow)
}

var timeoutCases = []timeoutCase{
	{"SYN only", func(b *kdBuilder, f kdFlow) {
		b.tcp(f, 0, tcpSeg{flags: "S", seq: 1000, win: 8192, wscale: -1}, "SYN")
	}, nil},
	{"SYN/ACK seen", func(b *kdBuilder, f kdFlow) {
		b.tcp(f, 0, tcpSeg{flags: "S", seq: 1000, win: 8192, wscale: -1}, "SYN")
		b.tcp(f, 1, tcpSeg{flags: "SA", seq: 5000, ack: 1001, win: 8192, wscale: -1}, "SYN/ACK")
	}, nil},
	{"established", func(b *kdBuilder, f kdFlow) { handshakeKD(b, f) }, nil},
	{"data unacknowledged", func(b *kdBuilder, f kdFlow) {
		handshakeKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "PA", seq: 1001, ack: 5001, win: 8192, payload: 100}, "data A")
	}, nil},
	{"FIN sent", func(b *kdBuilder, f kdFlow) {
		handshakeKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "FA", seq: 1001, ack: 5001, win: 8192}, "FIN A")
	}, nil},
	{"FIN acknowledged", func(b *kdBuilder, f kdFlow) {
		handshakeKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "FA", seq: 1001, ack: 5001, win: 8192}, "FIN A")
		b.tcp(f, 1, tcpSeg{flags: "A", seq: 5001, ack: 1002, win: 8192}, "ACK of FIN A")
	}, nil},
	{"closed (TIME_WAIT)", closedKD, nil},
	{"reset in window", func(b *kdBuilder, f kdFlow) {
		handshakeKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "RA", seq: 1001, ack: 5001, win: 0}, "RST A")
	}, nil},
	{"one RST out of window", func(b *kdBuilder, f kdFlow) {
		assuredKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "R", seq: 1101 + 1<<20, win: 0}, "RST A out of window")
	}, nil},
	{"RSTs crossing out of window", func(b *kdBuilder, f kdFlow) {
		assuredKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "R", seq: 1101 + 1<<20, win: 0}, "RST A out of window")
		b.tcp(f, 1, tcpSeg{flags: "R", seq: 5101 + 1<<20, win: 0}, "RST B out of window")
	}, nil},
	{"FINs crossing out of window", func(b *kdBuilder, f kdFlow) {
		assuredKD(b, f)
		b.tcp(f, 0, tcpSeg{flags: "FA", seq: 1101 + 1<<20, ack: 5101, win: 8192}, "FIN A out of window")
		b.tcp(f, 1, tcpSeg{flags: "FA", seq: 5101 + 1<<20, ack: 1101, win: 8192}, "FIN B out of window")
	}, nil},
	{"UDP one way", func(b *kdBuilder, f kdFlow) {
		b.udp(f, 0, 20, "query")
	}, nil},
	{"UDP answered", func(b *kdBuilder, f kdFlow) {
		b.udp(f, 0, 20, "query")
		b.udp(f, 1, 20, "answer")
	}, nil},
	{"UDP answered, then more", func(b *kdBuilder, f kdFlow) {
		b.udp(f, 0, 20, "query")
		b.udp(f, 1, 20, "answer")
		b.udp(f, 0, 20, "query 2")
	}, nil},
	{"UDP answered, more after 2 s", answeredKD, queryKD},
	{"UDP one way, more after 2 s", func(b *kdBuilder, f kdFlow) {
		b.udp(f, 0, 20, "query")
	}, func(b *kdBuilder, f kdFlow) {
		b.udp(f, 0, 20, "query after 2 s")
	}},
	{"ping", func(b *kdBuilder, f kdFlow) {
		b.echo(f, 0, false, f.aport, 1, "echo request")
	}, nil},
	{"ping answered", pingedKD, nil},
	{"IPv6 established", func(b *kdBuilder, f kdFlow) { handshakeKD(b, f) }, nil},
	{"IPv6 closed (TIME_WAIT)", closedKD, nil},
	{"IPv6 UDP answered, more after 2 s", answeredKD, queryKD},
	{"IPv6 ping answered", pingedKD, nil},
}

// closedKD opens flow f and closes it both ways (TIME_WAIT).
func closedKD(b *kdBuilder, f kdFlow) {
	handshakeKD(b, f)
	b.tcp(f, 0, tcpSeg{flags: "FA", seq: 1001, ack: 5001, win: 8192}, "FIN A")
	b.tcp(f, 1, tcpSeg{flags: "FA", seq: 5001, ack: 1002, win: 8192}, "FIN B")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: 1002, ack: 5002, win: 8192}, "last ACK")
}

// answeredKD is a UDP query and its answer; queryKD one more query.
func answeredKD(b *kdBuilder, f kdFlow) {
	b.udp(f, 0, 20, "query")
	b.udp(f, 1, 20, "answer")
}

func queryKD(b *kdBuilder, f kdFlow) { b.udp(f, 0, 20, "query after 2 s") }

// pingedKD is an echo request and its reply.
func pingedKD(b *kdBuilder, f kdFlow) {
	b.echo(f, 0, false, f.aport, 1, "echo request")
	b.echo(f, 1, true, f.aport, 1, "echo reply")
}

// handshakeKD opens flow f (A's ISN 1000, B's 5000).
func handshakeKD(b *kdBuilder, f kdFlow) {
	b.tcp(f, 0, tcpSeg{flags: "S", seq: 1000, win: 8192, wscale: -1}, "SYN")
	b.tcp(f, 1, tcpSeg{flags: "SA", seq: 5000, ack: 1001, win: 8192, wscale: -1}, "SYN/ACK")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: 1001, ack: 5001, win: 8192}, "ACK")
}

// assuredKD opens flow f and exchanges 100 bytes each way, acknowledged:
// the connection is assured, nothing is outstanding.
func assuredKD(b *kdBuilder, f kdFlow) {
	handshakeKD(b, f)
	b.tcp(f, 0, tcpSeg{flags: "PA", seq: 1001, ack: 5001, win: 8192, payload: 100}, "data A")
	b.tcp(f, 1, tcpSeg{flags: "PA", seq: 5001, ack: 1101, win: 8192, payload: 100}, "data B")
	b.tcp(f, 0, tcpSeg{flags: "A", seq: 1101, ack: 5101, win: 8192}, "ACK A")
}

// ctLine matches a conntrack -L line's protocol, timeout and A's port
// (for ICMP, the echo id, which the cases set to A's port).
var ctLine = regexp.MustCompile(`^(tcp|udp|icmpv6|icmp)\s+\d+\s+(\d+)\s.*?(?:sport|id)=(\d+)`)

// ctTimeouts maps A's port to the timeout a conntrack -L listing shows.
func ctTimeouts(out string) map[uint16]int {
	m := map[uint16]int{}
	for _, l := range strings.Split(out, "\n") {
		if s := ctLine.FindStringSubmatch(strings.TrimSpace(l)); s != nil {
			port, _ := strconv.Atoi(s[3])
			tmo, _ := strconv.Atoi(s[2])
			m[uint16(port)] = tmo
		}
	}
	return m
}

// knownTimeouts are the cases where dpfw's timeout deliberately differs.
var knownTimeouts = map[string]string{}

func TestKernelTimeouts(t *testing.T) {
	requireDPDK(t)
	if _, err := exec.LookPath("conntrack"); err != nil && os.Getenv("CI") == "" {
		t.Skip("conntrack is not installed (make deps)")
	}
	b := &kdBuilder{r: rand.New(rand.NewPCG(5, 5)), port: 7000}
	b2 := &kdBuilder{r: b.r}
	ports := make([]uint16, len(timeoutCases))
	for i, c := range timeoutCases {
		dport := uint16(5001)
		if strings.Contains(c.name, "UDP") {
			dport = 53
		}
		f := b.newFlow(strings.HasPrefix(c.name, "IPv6 "), dport)
		ports[i] = f.aport
		b.label, b2.label = c.name, c.name
		c.build(b, f)
		if c.later != nil {
			c.later(b2, f)
		}
	}
	k, br := kernelPath(t, kdNftRules)
	// Per-connection counters on both sides (nf_conntrack_acct), set
	// before any connection exists.
	sh(t, "ip", "netns", "exec", string(br), "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")
	sh(t, "ip", "netns", "exec", string(br), "sysctl", "-qw", "net.netfilter.nf_conntrack_timestamp=1")
	d, p := dpfwPath(t, func(c *config.Config) {
		kdDpfwRules(c)
		c.Conntrack.Accounting, c.Conntrack.Timestamps = true, true
	})
	kev := startCapture(t, "ip", "netns", "exec", string(br), "conntrack", "-E")
	dev := startCapture(t, dpfwBin, "conntrack", "events", "--api", p.metrics)
	time.Sleep(300 * time.Millisecond) // both listening
	runBoth(k, d, b.pkts)
	time.Sleep(2200 * time.Millisecond)
	runBoth(k, d, b2.pkts)
	kout, err := exec.Command("ip", "netns", "exec", string(br), "conntrack", "-L").Output() // stdout only: the summary on stderr could land inside a line
	if err != nil {
		t.Fatalf("conntrack -L: %v\n%s", err, kout)
	}
	dout, err := p.cli("conntrack", "list")
	if err != nil {
		t.Fatalf("dpfw conntrack list: %v\n%s", err, dout)
	}
	kt, dt := ctTimeouts(string(kout)), ctTimeouts(dout)
	same, known := 0, 0
	for i, c := range timeoutCases {
		kv, kok := kt[ports[i]]
		dv, dok := dt[ports[i]]
		diff := kv - dv
		switch {
		case kok == dok && (!kok || diff >= -3 && diff <= 3):
			same++
		case knownTimeouts[c.name] != "":
			known++
			t.Logf("%s: kernel %d s (listed %v), dpfw %d s (listed %v); known: %s", c.name, kv, kok, dv, dok, knownTimeouts[c.name])
		default:
			t.Errorf("%s: kernel %d s (listed %v), dpfw %d s (listed %v)", c.name, kv, kok, dv, dok)
		}
	}
	t.Logf("timeouts: %d connections, %d the same as the kernel, %d known differences", len(timeoutCases), same, known)
	if t.Failed() {
		t.Logf("kernel:\n%s\ndpfw:\n%s", kout, dout)
	}
	compareAccounting(t, string(kout), dout, ports)
	compareAges(t, "listing", string(kout), dout, ports)
	// -o timestamp: conntrack accepts it for -L and prints the same lines
	// (delta-time=, no [start=]); so does dpfw.
	kts, _ := exec.Command("ip", "netns", "exec", string(br), "conntrack", "-L", "-o", "timestamp").Output()
	dts, err := p.cli("conntrack", "list", "-o", "timestamp")
	for _, o := range []struct{ who, out string }{{"conntrack -L -o timestamp", string(kts)}, {"dpfw conntrack list -o timestamp", dts}} {
		if !strings.Contains(o.out, "delta-time=") || strings.Contains(o.out, "[start=") {
			t.Errorf("%s (%v): want delta-time= and no [start=]:\n%s", o.who, err, o.out)
		}
	}
	compareListFilters(t, br, p, ports)
	// Flush both: every connection left goes, with a DESTROY event.
	_ = exec.Command("ip", "netns", "exec", string(br), "conntrack", "-F").Run()
	if out, err := p.cli("conntrack", "flush"); err != nil {
		t.Errorf("dpfw conntrack flush: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond)
	kevents, devents := kev.stop(), dev.stop()
	compareEvents(t, kevents, devents, ports)
	compareAges(t, "DESTROY events", destroys(kevents), destroys(devents), ports)
	p.stop()
}

// outCapture is a command whose output a test collects until stop.
type outCapture struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func startCapture(t *testing.T, name string, args ...string) *outCapture {
	t.Helper()
	c := &outCapture{cmd: exec.Command(name, args...), out: new(bytes.Buffer)}
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	return c
}

// stop ends the command and returns what it printed.
func (c *outCapture) stop() string {
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	return c.out.String()
}

// ctEvent matches a conntrack -E line: the type, the TCP state (NEW and
// UPDATE of TCP), A's port.
var ctEvent = regexp.MustCompile(`\[(NEW|UPDATE|DESTROY)\]\s+\w+\s+\d+\s+(?:\d+\s+)?(?:([A-Z_]+[A-Z])\s+)?src=.*?(?:sport|id)=(\d+)`)

// compareEvents requires each connection's events, in order, to be the
// kernel's: type and TCP state.
func compareEvents(t *testing.T, kout, dout string, ports []uint16) {
	t.Helper()
	parse := func(out string) map[string][]string {
		m := map[string][]string{}
		for _, l := range strings.Split(out, "\n") {
			if s := ctEvent.FindStringSubmatch(l); s != nil {
				m[s[3]] = append(m[s[3]], strings.TrimSpace(s[1]+" "+s[2]))
			}
		}
		return m
	}
	ke, de := parse(kout), parse(dout)
	same, total := 0, 0
	for i, c := range timeoutCases {
		port := strconv.Itoa(int(ports[i]))
		k, d := strings.Join(ke[port], ", "), strings.Join(de[port], ", ")
		total += len(ke[port])
		if k == "" || k != d {
			t.Errorf("%s: events: kernel [%s], dpfw [%s]", c.name, k, d)
		} else {
			same++
		}
	}
	t.Logf("events: %d of %d connections with the kernel's events (%d events)", same, len(timeoutCases), total)
	if t.Failed() {
		t.Logf("kernel:\n%s\ndpfw:\n%s", kout, dout)
	}
}

// ctAcct matches a conntrack -L line's A port and both directions'
// counters.
var ctAcct = regexp.MustCompile(`(?:sport|id)=(\d+) .*?packets=(\d+) bytes=(\d+) .*?packets=(\d+) bytes=(\d+)`)

// compareAccounting requires each connection's packets and bytes, per
// direction, to be the kernel's.
func compareAccounting(t *testing.T, kout, dout string, ports []uint16) {
	t.Helper()
	parse := func(out string) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(out, "\n") {
			if s := ctAcct.FindStringSubmatch(l); s != nil {
				m[s[1]] = strings.Join(s[2:], "/")
			}
		}
		return m
	}
	kc, dc := parse(kout), parse(dout)
	same := 0
	for i, c := range timeoutCases {
		port := strconv.Itoa(int(ports[i]))
		if kc[port] == "" || kc[port] != dc[port] {
			t.Errorf("%s: packets/bytes original/reply: kernel %q, dpfw %q", c.name, kc[port], dc[port])
		} else {
			same++
		}
	}
	t.Logf("accounting: %d of %d connections with the kernel's packets and bytes in both directions", same, len(timeoutCases))
	for _, out := range []string{kout, dout} {
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "ESTABLISHED") && strings.Contains(l, "packets=") {
				t.Logf("e.g. %s", strings.TrimSpace(l))
				break
			}
		}
	}
}

// listFilters are conntrack -L filters dpfw conntrack list takes alike.
var listFilters = [][]string{
	{"-p", "tcp"},
	{"-p", "udp", "--dport", "53"},
	{"-p", "tcp", "--sport", "5001"},
	{"-p", "tcp", "--reply-port-src", "5001"},
	{"-p", "tcp", "--orig-port-dst", "5001"},
	{"-s", kdA4},
	{"-d", kdA4},
	{"-r", kdB4},
	{"-q", kdB4},
	{"-u", "ASSURED"},
	{"-u", "SEEN_REPLY"},
	{"-u", "UNREPLIED"},
	{"-u", "ASSURED,SEEN_REPLY"},
	{"-f", "ipv4"},
	{"-f", "ipv6"},
	{"-p", "tcp", "--state", "ESTABLISHED"},
}

// compareListFilters lists the test's connections with each filter from
// the kernel's conntrack and from dpfw: the same connections (by A's
// port, among ports).
func compareListFilters(t *testing.T, br netns, p *proc, ports []uint16) {
	t.Helper()
	ours := map[uint16]bool{}
	for _, port := range ports {
		ours[port] = true
	}
	listed := func(out string) string {
		var got []int
		for port := range ctTimeouts(out) {
			if ours[port] {
				got = append(got, int(port))
			}
		}
		sort.Ints(got)
		return fmt.Sprint(got)
	}
	same := 0
	for _, f := range listFilters {
		kout, err := exec.Command("ip", append([]string{"netns", "exec", string(br), "conntrack", "-L"}, f...)...).Output()
		if err != nil {
			t.Errorf("conntrack -L %v: %v\n%s", f, err, kout)
			continue
		}
		dout, err := p.cli(append([]string{"conntrack", "list"}, f...)...)
		if err != nil {
			t.Errorf("dpfw conntrack list %v: %v\n%s", f, err, dout)
			continue
		}
		if k, d := listed(string(kout)), listed(dout); k != d {
			t.Errorf("filter %v: the kernel lists %s, dpfw %s", f, k, d)
		} else {
			same++
		}
	}
	t.Logf("list filters: %d of %d list the same connections as conntrack -L", same, len(listFilters))
	// --json names the fields: addresses as strings, both tuples, state,
	// timeout, counters.
	out, err := p.cli("conntrack", "list", "--json", "-f", "ipv4", "-p", "tcp", "--dport", "5001", "--state", "TIME_WAIT")
	var js struct {
		Count   int `json:"count"`
		Entries []struct {
			Proto, State, Family string
			Timeout              int
			Orig, Reply          struct {
				Src, Dst       string
				SPort, DPort   int
				Packets, Bytes int
			}
		} `json:"entries"`
	}
	if err != nil || json.Unmarshal([]byte(out), &js) != nil || js.Count != 1 {
		t.Errorf("conntrack list --json: %v\n%s", err, out)
	} else if e := js.Entries[0]; e.Proto != "tcp" || e.State != "TIME_WAIT" || e.Family != "ipv4" || e.Timeout <= 0 ||
		e.Orig.Src != kdA4 || e.Reply.Src != kdB4 || e.Orig.DPort != 5001 || e.Reply.SPort != 5001 || e.Orig.Packets == 0 || e.Reply.Bytes == 0 {
		t.Errorf("conntrack list --json entry: %+v", e)
	}
	// Deleting nothing fails, as conntrack -D does (exit 1).
	kerr := exec.Command("ip", "netns", "exec", string(br), "conntrack", "-D", "-p", "tcp", "--dport", "1").Run()
	out, derr := p.cli("conntrack", "flush", "-p", "tcp", "--dport", "1")
	var ke, de *exec.ExitError
	if !errors.As(kerr, &ke) || !errors.As(derr, &de) || ke.ExitCode() != 1 || de.ExitCode() != 1 ||
		!strings.Contains(out, "0 flow entries have been deleted") {
		t.Errorf("a flush matching nothing: conntrack -D %v, dpfw %v (%s); want exit 1 from both", kerr, derr, out)
	}
}

// ctAge matches a conntrack line's A port and its delta-time (with
// nf_conntrack_timestamp: the connection's age, or in a DESTROY its life).
var ctAge = regexp.MustCompile(`(?:sport|id)=(\d+) .*? delta-time=(\d+)`)

// destroys keeps the DESTROY lines of an event stream.
func destroys(out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "[DESTROY]") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// compareAges requires each connection's delta-time to be the kernel's,
// within 2 s (both sides see the same packets, a moment apart).
func compareAges(t *testing.T, what, kout, dout string, ports []uint16) {
	t.Helper()
	parse := func(out string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(out, "\n") {
			if s := ctAge.FindStringSubmatch(l); s != nil {
				m[s[1]], _ = strconv.Atoi(s[2])
			}
		}
		return m
	}
	ka, da := parse(kout), parse(dout)
	same, listed := 0, 0
	for i, c := range timeoutCases {
		port := strconv.Itoa(int(ports[i]))
		kv, kok := ka[port]
		dv, dok := da[port]
		if kok {
			listed++
		}
		if kok != dok || kv-dv > 2 || dv-kv > 2 {
			t.Errorf("%s: %s delta-time: kernel %d (shown %v), dpfw %d (shown %v)", c.name, what, kv, kok, dv, dok)
		} else {
			same++
		}
	}
	if listed == 0 {
		t.Errorf("%s: the kernel showed no delta-time (nf_conntrack_timestamp)", what)
	}
	t.Logf("%s: %d of %d connections with the kernel's delta-time (%d shown)", what, same, len(timeoutCases), listed)
}
