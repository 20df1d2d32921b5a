package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpfw/dpfw/perf/pcapgen"
)

// dpfwBin is the binary under test, built once by TestMain.
var dpfwBin string

func TestMain(m *testing.M) {
	switch os.Getenv("DPFW_E2E_HELPER") {
	case "tcp-server":
		os.Exit(tcpServer())
	case "tcp-client":
		os.Exit(tcpClient())
	case "tcp-accept":
		os.Exit(tcpAcceptor())
	case "tcp-dial":
		os.Exit(tcpDialer())
	}
	dir, err := os.MkdirTemp("", "dpfw-e2e-")
	if err != nil {
		panic(err)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if canRunDPDK() == "" {
			dpfwBin = filepath.Join(dir, "dpfw")
			out, err := exec.Command("go", "build", "-o", dpfwBin, ".").CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "building dpfw: %v\n%s", err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// canRunDPDK returns why DPDK end-to-end tests cannot run here, or "".
func canRunDPDK() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if err := exec.Command("pkg-config", "--exists", "libdpdk").Run(); err != nil {
		return "DPDK is not installed (make deps)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "iproute2 is not installed (make deps)"
	}
	return ""
}

// requireDPDK skips a test that cannot run here, except in CI, where every
// test must run: there it fails.
func requireDPDK(t *testing.T) {
	t.Helper()
	if why := canRunDPDK(); why != "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("end-to-end test cannot run in CI: %s", why)
		}
		t.Skipf("end-to-end test skipped: %s (run as root after make deps)", why)
	}
}

// proc is a running dpfw.
type proc struct {
	t       *testing.T
	cmd     *exec.Cmd
	metrics string
	out     *bytes.Buffer
	errOut  *safeBuffer
	done    chan struct{}
	exitErr error
	// cfgPath is the config file; cfg its contents.
	cfgPath, cfg string
}

// startDPFW writes cfg (with METRICS and PREFIX replaced) and runs dpfw on it,
// waiting until its data plane runs.
func startDPFW(t *testing.T, cfg string) *proc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg = strings.ReplaceAll(cfg, "METRICS", addr)
	cfg = strings.ReplaceAll(cfg, "PREFIX", fmt.Sprintf("dpfwt%d", rand.IntN(1<<30)))
	path := filepath.Join(t.TempDir(), "dpfw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, metrics: addr, out: new(bytes.Buffer), errOut: new(safeBuffer), done: make(chan struct{}), cfgPath: path, cfg: cfg}
	ready := filepath.Join(filepath.Dir(path), "ready")
	p.cmd = exec.Command(dpfwBin, "run", "--config", path, "--ready-file", ready)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.errOut
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	// Wait for readiness (--ready-file: every port started, every worker
	// polling, the API listening), never for interfaces to appear.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-p.done:
			t.Fatalf("dpfw exited during start-up: %v\n%s", p.exitErr, p.errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dpfw did not start in 20s:\n%s", p.errOut.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(cfg, "listen: "+addr) {
		for _, probe := range []string{"/readyz", "/healthz"} {
			resp, err := http.Get("http://" + addr + probe)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s once ready: %v %v", probe, err, resp)
			}
			resp.Body.Close()
		}
	}
	return p
}

// stop sends SIGINT and requires a clean exit with every mbuf returned.
func (p *proc) stop() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		p.t.Fatalf("dpfw did not stop within 20s of SIGINT")
	}
	if p.exitErr != nil {
		p.t.Fatalf("dpfw exited with %v:\n%s", p.exitErr, p.errOut.String())
	}
	if !strings.Contains(p.errOut.String(), "all mbufs returned to the pool") {
		p.t.Fatalf("dpfw did not report every mbuf returned:\n%s", p.errOut.String())
	}
	if out := p.errOut.String(); !strings.Contains(out, "unaccounted=0") && !strings.Contains(out, `"unaccounted":0,`) {
		p.t.Fatalf("dpfw's packet accounting (rx = tx + dropped + steered) does not balance:\n%s", p.errOut.String())
	}
}

// waitLog waits up to d for s in dpfw's log and reports whether it came.
func (p *proc) waitLog(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(p.errOut.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// metric returns the sum of every series of a metric whose labels contain
// every one of sel (labels are printed in alphabetical order).
func (p *proc) metric(name string, sel ...string) float64 {
	p.t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		p.t.Fatalf("scraping dpfw: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, name+"{") && !strings.HasPrefix(l, name+" ") {
			continue
		}
		match := true
		for _, s := range sel {
			if !strings.Contains(l, s) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// waitMetric waits until metric ≥ want, up to d.
func (p *proc) waitMetric(name, sel string, want float64, d time.Duration) float64 {
	if sel == "" {
		return p.waitMetricAll(name, nil, want, d)
	}
	return p.waitMetricAll(name, []string{sel}, want, d)
}

func (p *proc) waitMetricAll(name string, sel []string, want float64, d time.Duration) float64 {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := p.metric(name, sel...)
		if v >= want || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// mustRun runs a command, failing the test with its output on error.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Helpers run inside namespaces by re-executing the test binary.

const helperBytes = 10 << 20

// tcpServer listens on DPFW_E2E_ADDR and sends helperBytes of deterministic
// data to the first client, then exits. Bounded: it gives up after 30s.
func tcpServer() int {
	ln, err := net.Listen("tcp", os.Getenv("DPFW_E2E_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
	c, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(c, io.LimitReader(newDataSource(), helperBytes)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// tcpClient connects to DPFW_E2E_ADDR and prints the sha256 of what it reads.
func tcpClient() int {
	timeout := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("DPFW_E2E_DIAL_TIMEOUT")); err == nil {
		timeout = d
	}
	c, err := net.DialTimeout("tcp", os.Getenv("DPFW_E2E_ADDR"), timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("%d %s\n", n, hex.EncodeToString(h.Sum(nil)))
	return 0
}

// newDataSource returns the deterministic byte stream both sides agree on.
func newDataSource() io.Reader {
	return &chachaReader{r: rand.NewChaCha8([32]byte{'d', 'p', 'f', 'w'})}
}

type chachaReader struct{ r *rand.ChaCha8 }

func (c *chachaReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func expectedDigest() string {
	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(newDataSource(), helperBytes))
	return fmt.Sprintf("%d %s", helperBytes, hex.EncodeToString(h.Sum(nil)))
}

// cli runs a dpfw client subcommand against p.
func (p *proc) cli(args ...string) (string, error) {
	out, err := exec.Command(dpfwBin, append(args, "--api", p.metrics)...).CombinedOutput()
	return string(out), err
}

// rewrite replaces the config file's contents (as an editor would: write a
// temporary file and rename it over the original).
func (p *proc) rewrite(cfg string) {
	p.t.Helper()
	tmp := p.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.cfgPath); err != nil {
		p.t.Fatal(err)
	}
}

// dump returns dpfw's log and its non-zero dpfw_ metrics, for failure messages.
func (p *proc) dump() string {
	var b strings.Builder
	b.WriteString(p.errOut.String())
	if resp, err := http.Get("http://" + p.metrics + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(l, "dpfw_") && !strings.HasSuffix(l, " 0") {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.String()
}

// pcapRun is dpfw replaying a capture into port a of a two-port net_pcap
// link a–b (port b receives nothing).
type pcapRun struct {
	*proc
	sent      int
	out, back string // what b and a transmitted
}

// startPcap writes frames as port a's capture and starts dpfw on it; link
// adds to the link's YAML (e.g. ", inside: b") and extra to the config.
func startPcap(t *testing.T, frames [][]byte, link, extra string) *pcapRun {
	t.Helper()
	dir := t.TempDir()
	in, empty := filepath.Join(dir, "in.pcap"), filepath.Join(dir, "empty.pcap")
	if err := pcapgen.Write(in, frames); err != nil {
		t.Fatal(err)
	}
	if err := pcapgen.Write(empty, nil); err != nil {
		t.Fatal(err)
	}
	r := &pcapRun{sent: len(frames), out: filepath.Join(dir, "out.pcap"), back: filepath.Join(dir, "back.pcap")}
	if !strings.Contains(extra, "rules:") {
		extra += "rules: {allow_empty: true}\n" // no rules: the test compares what is forwarded
	}
	r.proc = startDPFW(t, fmt.Sprintf(`
eal: {file_prefix: PREFIX, hugepages: "no", memory_mb: 256}
mempool: {mbufs: 8191, cache: 64}
ports:
  - {name: a, device: "net_pcap0,rx_pcap=%s,tx_pcap=%s"}
  - {name: b, device: "net_pcap1,rx_pcap=%s,tx_pcap=%s"}
links: [{name: wire, ports: [a, b]%s}]
workers: {cpus: [1], idle_polls: 64, idle_sleep: 100us}
metrics: {listen: METRICS}
%s`, in, r.back, empty, r.out, link, extra))
	return r
}

// waitReceived waits until dpfw has received the whole capture.
func (r *pcapRun) waitReceived() {
	r.t.Helper()
	if got := r.waitMetric("dpfw_worker_rx_packets_total", "", float64(r.sent), 10*time.Second); got != float64(r.sent) {
		r.t.Fatalf("dpfw received %v of %d frames", got, r.sent)
	}
}

// forwarded stops dpfw and returns what port b transmitted, requiring that
// nothing went back out of port a.
func (r *pcapRun) forwarded() [][]byte {
	r.t.Helper()
	r.stop()
	got, err := pcapgen.Read(r.out)
	if err != nil {
		r.t.Fatal(err)
	}
	if b, _ := pcapgen.Read(r.back); len(b) != 0 {
		r.t.Errorf("%d frames went back out of the input port; want 0", len(b))
	}
	return got
}

// sameFrames requires got to be want, byte for byte and in order.
func sameFrames(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d frames forwarded; want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d differs:\ngot  %x\nwant %x", i, got[i], want[i])
		}
	}
}
