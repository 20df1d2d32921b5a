package main

import (
	"fmt"
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
	conf := fmt.Sprintf(`Sync {
	Mode NOTRACK {
		StartupResync on
	}
	UDP {
		IPv4_address %s
		IPv4_Destination_Address %s
		Port 3780
		Interface %s
		Checksum on
	}
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
`, l.peerIP, l.dpfwAddr, l.peerIf, dir, dir, dir)
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
	})
	peerList := func() string { return mustRun(t, "ip", "netns", "exec", string(l.peer), "conntrack", "-L") }
	external := func() string { out, _ := p.cli("ha", "external"); return out }
	// The resync at start brings the kernel's entries.
	want := keys(peerList())
	if len(want) != 2 {
		t.Fatalf("the peer's kernel lists %v", want)
	}
	waitKeys(t, "dpfw's external cache after its resync", external, want)

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
