package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpfw/dpfw/conntrack"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
)

// requireTool skips a test without the named program, except in CI, where
// make deps installs it: there it fails.
func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (make deps installs it)", name)
		}
		t.Skipf("%s is not installed (make deps)", name)
	}
}

// nfFlow is one flow as nfdump prints it.
type nfFlow struct {
	src, dst        string
	sport, dport    int
	proto           string
	packets, octets uint64
}

// TestTapIPFIX: dpfw exports its connections over IPFIX to Debian's
// nfcapd; nfdump shows the TCP transfer's and the ping's flows, both
// directions, with the addresses, ports, packets and bytes of dpfw's own
// DESTROY events (the counters conntrack -E shows), and the 10 MB sent.
func TestTapIPFIX(t *testing.T) {
	requireDPDK(t)
	requireTool(t, "nfcapd")
	requireTool(t, "nfdump")
	collector := freeUDP(t)
	_, port, _ := net.SplitHostPort(collector)
	dir := t.TempDir()
	capd := exec.Command("nfcapd", "-w", dir, "-b", "127.0.0.1", "-p", port, "-t", "3600")
	var capOut e2e.Buffer
	capd.Stdout, capd.Stderr = &capOut, &capOut
	if err := capd.Start(); err != nil {
		t.Fatal(err)
	}
	capDone := make(chan struct{})
	go func() { _ = capd.Wait(); close(capDone) }()
	t.Cleanup(func() { _ = capd.Process.Kill(); <-capDone })

	p, cns, sns := tapPair(t, func(c *config.Config) {
		e2e.Iptables(c, statefulRules, "")
		c.FlowExport.Collectors = []string{collector}
		c.FlowExport.ActiveTimeout = time.Hour // only ended connections
		c.Conntrack.Timeouts.TCPTimeWait, c.Conntrack.Timeouts.TCPClose, c.Conntrack.Timeouts.ICMP = time.Second, time.Second, time.Second
		c.Conntrack.Capacity = 4096 // the reaper passes every entry within a second
	})
	events, err := http.Get("http://" + p.metrics + "/api/conntrack/events?events=DESTROY&format=json&count=2")
	if err != nil || events.StatusCode != 200 {
		t.Fatalf("events: %v %v", err, events)
	}
	defer events.Body.Close()
	startHelper(t, sns, "198.18.0.2:5001")
	if got, err := fetch(cns, "198.18.0.2:5001"); err != nil || got != expectedDigest() {
		t.Fatalf("transfer: %v %q", err, got)
	}
	if out, err := cns.Command("ping", "-c", "2", "-i", "0.2", "-W", "2", "198.18.0.2").CombinedOutput(); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	want := map[string]nfFlow{}
	sc := bufio.NewScanner(events.Body)
	for len(want) < 4 && sc.Scan() {
		var ev struct{ Entry conntrack.EntryJSON }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		for _, d := range []conntrack.TupleJSON{ev.Entry.Orig, ev.Entry.Reply} {
			f := nfFlow{src: d.Src, dst: d.Dst, proto: ev.Entry.Proto}
			if d.SPort != nil {
				f.sport, f.dport = int(*d.SPort), int(*d.DPort)
			}
			if d.Packets != nil {
				f.packets, f.octets = *d.Packets, *d.Bytes
			}
			want[d.Src+">"+d.Dst+"/"+ev.Entry.Proto] = f
		}
	}
	if len(want) != 4 {
		t.Fatalf("%d DESTROY directions; want the TCP connection's and the ping's, both ways: %v", len(want), want)
	}
	if got := p.waitMetric("dpfw_flow_export_records_total", "", 4, 10*time.Second); got < 4 {
		t.Fatalf("flow records sent: %v; want 4\n%s", got, p.dump())
	}
	// nfcapd writes its file when it stops; give it time to read the last
	// datagram first.
	time.Sleep(time.Second)
	_ = capd.Process.Signal(syscall.SIGTERM)
	select {
	case <-capDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("nfcapd did not stop:\n%s", capOut.String())
	}
	got := nfdumpFlows(t, dir)
	for k, w := range want {
		g, ok := got[k]
		if w.proto == "icmp" {
			g.sport, g.dport, w.sport, w.dport = 0, 0, 0, 0 // nfdump shows type.code
		}
		if !ok || g != w {
			t.Errorf("flow %s: nfdump shows %+v; dpfw's DESTROY event %+v", k, g, w)
		}
	}
	if data := want["198.18.0.2>198.18.0.1/tcp"]; data.octets < helperBytes || data.octets > helperBytes*21/20 {
		t.Errorf("the transfer's flow carried %d bytes; want the %d sent plus headers", data.octets, helperBytes)
	}
	if m := p.metric("dpfw_flow_export_lost_total"); m != 0 {
		t.Errorf("flow records lost: %v", m)
	}
	p.stop()
}

// nfdumpFlows reads what nfcapd stored in dir, by "src>dst/proto".
func nfdumpFlows(t *testing.T, dir string) map[string]nfFlow {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "nfcapd.2*"))
	if len(files) == 0 {
		all, _ := filepath.Glob(filepath.Join(dir, "*"))
		t.Fatalf("nfcapd wrote no file in %s: %v", dir, all)
	}
	out, err := exec.Command("nfdump", "-q", "-N", "-R", dir, "-o", "fmt:%sa|%da|%sp|%dp|%pr|%pkt|%byt").CombinedOutput()
	if err != nil {
		t.Fatalf("nfdump: %v\n%s", err, out)
	}
	flows := map[string]nfFlow{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 7 {
			t.Fatalf("nfdump line %q", l)
		}
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		sp, _ := strconv.Atoi(f[2])
		dp, _ := strconv.Atoi(f[3])
		pk, _ := strconv.ParseUint(f[5], 10, 64)
		by, _ := strconv.ParseUint(f[6], 10, 64)
		proto := strings.ToLower(f[4])
		if n, ok := map[string]string{"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}[proto]; ok {
			proto = n // -N prints the protocol's number
		}
		flows[fmt.Sprintf("%s>%s/%s", f[0], f[1], proto)] = nfFlow{f[0], f[1], sp, dp, proto, pk, by}
	}
	return flows
}
