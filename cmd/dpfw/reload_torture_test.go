package main

import (
	"fmt"
	dprules "github.com/dpfw/dpfw/dataplane/rules"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
)

// tcpAcceptor accepts connections on DPFW_E2E_ADDR and closes them at
// once, for 60 s at the most (a probe target).
func tcpAcceptor() int {
	ln, err := net.Listen("tcp", os.Getenv("DPFW_E2E_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(60 * time.Second))
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		c.Close()
	}
}

// tcpDialer exits 0 if it can connect to DPFW_E2E_ADDR within 1 s.
func tcpDialer() int {
	c, err := net.DialTimeout("tcp", os.Getenv("DPFW_E2E_ADDR"), time.Second)
	if err != nil {
		return 1
	}
	c.Close()
	return 0
}

// tortureRules is a complete save file: the stateful policy plus NEW to
// the probe port open.
func tortureRules(open int) string {
	return fmt.Sprintf(`# torture rules, port %d open
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT DROP [0:0]
-A INPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p icmp --icmp-type echo-request -m state --state NEW -j ACCEPT
-A INPUT -p tcp --dport %d -m state --state NEW -j ACCEPT
-A OUTPUT -m state --state ESTABLISHED,RELATED -j ACCEPT
COMMIT
`, open, open)
}

// TestTapReloadTorture edits a live rules file every way an operator (or a
// crash) can, with a ping series running through dpfw: written slowly in
// place, truncated, emptied, replaced by a FIFO, made huge, replaced by
// rename. After each step, probe connections show that exactly the last
// complete good rules apply, and at the end no echo of the series was
// lost. Last, SIGTERM during a reload that is still compiling stops dpfw
// within 2 s.
func TestTapReloadTorture(t *testing.T) {
	requireDPDK(t)
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.v4")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(rules, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	replace := func(text string) {
		t.Helper()
		tmp := rules + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, rules); err != nil {
			t.Fatal(err)
		}
	}
	write(tortureRules(5002))
	p, cns, sns := tapPair(t, func(c *config.Config) {
		c.Rules = config.Rules{File: rules, Watch: "write", MaxFileSize: 1 << 20, ReloadTimeout: 20 * time.Second}
	})
	for _, port := range []int{5002, 5003} {
		startHelperMode(t, sns, "tcp-accept", fmt.Sprintf("198.18.0.2:%d", port))
	}
	dial := func(port int) bool {
		c := cns.Command(os.Args[0])
		c.Env = append(os.Environ(), "DPFW_E2E_HELPER=tcp-dial", fmt.Sprintf("DPFW_E2E_ADDR=198.18.0.2:%d", port))
		return c.Run() == nil
	}
	// expect requires that exactly port open of the two probe ports
	// accepts new connections.
	expect := func(step string, open int) {
		t.Helper()
		closed := 5002 + 5003 - open
		if !dial(open) {
			t.Errorf("%s: a NEW connection to port %d (open in the last good rules) failed\n%s", step, open, p.dump())
		}
		if dial(closed) {
			t.Errorf("%s: a NEW connection to port %d (open in no complete rules since) went through\n%s", step, closed, p.dump())
		}
	}
	failures := func() float64 { return p.metric("dpfw_config_reloads_total", `result="failure"`) }
	// waitFailures waits until n more reloads have failed than before.
	waitFailures := func(step string, before float64, n float64) {
		t.Helper()
		if got := p.waitMetric("dpfw_config_reloads_total", `result="failure"`, before+n, 5*time.Second); got < before+n {
			t.Errorf("%s: %v reloads failed; want %v more than %v\n%s", step, got, n, before, p.dump())
		}
	}

	// The established flow: a ping series for the whole test (bounded).
	ping := cns.Command("ping", "-c", "600", "-i", "0.05", "-W", "1", "198.18.0.2")
	var pingOut e2e.Buffer
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ping.Process.Kill(); _ = ping.Wait() })

	expect("start", 5002)

	// Written slowly in place: every pause is longer than the watcher's
	// settle time, so each partial version is reloaded, and refused.
	good2 := tortureRules(5003)
	cut1 := strings.Index(good2, "-A INPUT") // header and chains, no rules
	cut2 := strings.Index(good2, "-A OUTPUT")
	before := failures()
	write("")
	time.Sleep(1500 * time.Millisecond)
	expect("emptied in place", 5002)
	for _, cut := range []int{cut1, cut2} {
		f, err := os.OpenFile(rules, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < cut; i += 16 {
			_, _ = f.WriteString(good2[i:min(i+16, cut)])
			time.Sleep(5 * time.Millisecond)
		}
		f.Close()
		time.Sleep(1500 * time.Millisecond)
		expect(fmt.Sprintf("partial file of %d bytes", cut), 5002)
	}
	waitFailures("partial versions", before, 3)
	write(good2)
	if p.waitMetric("dpfw_config_reloads_total", `result="success"`, 1, 5*time.Second) < 1 {
		t.Fatalf("the complete file written in place was not reloaded\n%s", p.dump())
	}
	expect("complete file written in place", 5003)

	// Truncated (a crash while writing), then emptied by a rename.
	before = failures()
	replace(good2[:cut2])
	replace("")
	waitFailures("truncated and emptied", before, 1)
	expect("truncated and emptied", 5003)

	// A FIFO renamed into place: refused at once, never blocking.
	before = failures()
	fifo := rules + ".fifo"
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(fifo, rules); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := p.cli("reload")
	if err == nil || !strings.Contains(out, "is a FIFO") || time.Since(start) > 2*time.Second {
		t.Errorf("reload of a FIFO: %v after %v:\n%s", err, time.Since(start), out)
	}
	expect("FIFO", 5003)

	// Huge: twice rules.max_file_size.
	huge := tortureRules(5002) + strings.Repeat("# padding padding padding padding padding padding\n", 2<<20/50)
	replace(huge)
	start = time.Now()
	out, err = p.cli("reload")
	if err == nil || !strings.Contains(out, "larger than 1048576 bytes") || time.Since(start) > 2*time.Second {
		t.Errorf("reload of a huge file: %v after %v:\n%s", err, time.Since(start), out)
	}
	expect("huge file", 5003)
	waitFailures("FIFO and huge file", before, 2)

	// Replaced by rename with good rules: they apply.
	replace(tortureRules(5002))
	out, err = p.cli("reload")
	if err != nil {
		t.Fatalf("reload of good rules: %v\n%s", err, out)
	}
	expect("good rules renamed into place", 5002)

	// A refused file of more chains than dpfw's limit: refused before it is
	// parsed, and the memory it took is given back.
	rssBefore := rssMB(t, p.Pid())
	var chains strings.Builder
	chains.WriteString("*filter\n:INPUT DROP [0:0]\n")
	for i := 0; i <= dprules.MaxDecisions; i++ {
		fmt.Fprintf(&chains, ":t%d - [0:0]\n", i)
	}
	chains.WriteString("COMMIT\n")
	bigger := p.Config
	bigger.Rules.MaxFileSize = 64 << 20
	p.reconfigure(bigger)
	replace(chains.String())
	start = time.Now()
	out, err = p.cli("reload")
	if err == nil || !strings.Contains(out, fmt.Sprintf("more than %d rules and chains", dprules.MaxDecisions)) {
		t.Errorf("reload of %d chains: %v after %v:\n%s", dprules.MaxDecisions+1, err, time.Since(start), out)
	}
	time.Sleep(1500 * time.Millisecond)
	rssAfter := rssMB(t, p.Pid())
	t.Logf("RSS: %d MB before the %d-chain reload, %d MB after it was refused (refused in %v)", rssBefore, dprules.MaxDecisions+1, rssAfter, time.Since(start))
	if rssAfter > rssBefore+64 {
		t.Errorf("RSS grew from %d MB to %d MB after a refused reload", rssBefore, rssAfter)
	}
	replace(tortureRules(5002))
	if out, err := p.cli("reload"); err != nil {
		t.Fatalf("reload of good rules: %v\n%s", err, out)
	}
	expect("after the refused chains", 5002)

	// The established flow saw every step: no echo lost.
	_ = ping.Process.Signal(syscall.SIGINT)
	_ = ping.Wait()
	m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(pingOut.String())
	if m == nil {
		t.Fatalf("ping summary missing:\n%s", pingOut.String())
	}
	sent, got := atoi(m[1]), atoi(m[2])
	if sent < 100 || sent-got > 2 {
		t.Errorf("ping series through the torture: %d sent, %d received; want no more than 2 lost\n%s", sent, got, p.dump())
	}
	t.Logf("ping series: %d sent, %d received", sent, got)

	// SIGTERM while a reload is parsing and compiling 600,000 rules (seconds):
	// dpfw stops within 2 s.
	var big strings.Builder
	big.WriteString("*filter\n:INPUT DROP [0:0]\n-A INPUT -m state --state ESTABLISHED -j ACCEPT\n")
	for i := 0; i < 600_000; i++ {
		fmt.Fprintf(&big, "-A INPUT -s 198.%d.%d.%d/32 -p tcp --dport %d -j ACCEPT\n", 18+(i>>16)&1, (i>>8)&255, i&255, 1024+i%50000)
	}
	big.WriteString("COMMIT\n")
	time.Sleep(500 * time.Millisecond)
	starts := strings.Count(p.errOut.String(), `msg=reloading`)
	replace(big.String())
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(p.errOut.String(), `msg=reloading`) == starts && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // parsed by now, compiling
	logNow := p.errOut.String()
	if tail := logNow[strings.LastIndex(logNow, "msg=reloading"):]; strings.Contains(tail, "msg=reloaded") || strings.Contains(tail, "reload failed") {
		t.Fatalf("the 600,000-rule reload was over before SIGTERM; the test needs it running:\n%s", tail)
	}
	start = time.Now()
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("dpfw did not stop within 10 s of SIGTERM during a reload\n%s", p.errOut.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("dpfw took %v to stop on SIGTERM during a reload; want at most 2 s", d)
	}
	if !strings.Contains(p.errOut.String(), "all mbufs returned to the pool") {
		t.Errorf("dpfw did not report every mbuf returned:\n%s", p.errOut.String())
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// rssMB reads a process's resident set size.
func rssMB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	return atoi(string(m[1])) / 1024
}
