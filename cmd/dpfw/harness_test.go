package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
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
	case "udp-flows":
		os.Exit(udpFlows())
	case "ftp-pasv":
		os.Exit(ftpPasv())
	case "udp-echo":
		os.Exit(udpEcho())
	case "udp-ping":
		os.Exit(udpPing())
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

// proc is a running dpfw (internal/e2e) and the test it belongs to; its
// methods fail the test where e2e returns an error.
type proc struct {
	*e2e.Proc
	t *testing.T
	// metrics is the API address, errOut dpfw's log so far, cfgPath its
	// config file.
	metrics, cfgPath string
	errOut           *e2e.Buffer
}

// startDPFW runs dpfw on cfg (internal/e2e picks its API port and file
// prefix) and waits until its data plane runs; it is killed at cleanup if
// the test has not stopped it.
func startDPFW(t *testing.T, cfg config.Config) *proc {
	t.Helper()
	ep, err := e2e.Start(dpfwBin, t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ep.Kill)
	return &proc{Proc: ep, t: t, metrics: ep.API, cfgPath: ep.Path, errOut: ep.Stderr}
}

// stop sends SIGINT and requires a clean exit with every mbuf returned
// and the packet accounting balanced.
func (p *proc) stop() {
	p.t.Helper()
	if err := p.Stop(); err != nil {
		p.t.Fatal(err)
	}
}

// waitLog waits up to d for s in dpfw's log and reports whether it came.
func (p *proc) waitLog(s string, d time.Duration) bool { return p.WaitLog(s, d) }

// metric returns the sum of every series of a metric whose labels contain
// every one of sel (labels are printed in alphabetical order).
func (p *proc) metric(name string, sel ...string) float64 {
	p.t.Helper()
	v, err := p.Metric(name, sel...)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
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
	v, err := p.WaitMetric(name, sel, want, d)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

// cli runs a dpfw client subcommand against p.
func (p *proc) cli(args ...string) (string, error) { return p.CLI(args...) }

// rewrite replaces the config file's contents (as an editor would: write a
// temporary file and rename it over the original), for configs a test
// breaks on purpose.
func (p *proc) rewrite(text string) {
	p.t.Helper()
	if err := p.Rewrite([]byte(text)); err != nil {
		p.t.Fatal(err)
	}
}

// reconfigure rewrites the config file with cfg.
func (p *proc) reconfigure(cfg config.Config) {
	p.t.Helper()
	if err := p.Reconfigure(cfg); err != nil {
		p.t.Fatal(err)
	}
}

// dump returns dpfw's log and its non-zero dpfw_ metrics, for failure messages.
func (p *proc) dump() string { return p.Dump() }

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
	src := io.LimitReader(newDataSource(), helperBytes)
	if pace, err := time.ParseDuration(os.Getenv("DPFW_E2E_PACE")); err == nil {
		src = paced(src, pace)
	}
	if _, err := io.Copy(c, src); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// paced spreads helperBytes of r over about d (DPFW_E2E_PACE), for
// transfers long enough to fail over in the middle of.
func paced(r io.Reader, d time.Duration) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		const chunk = 64 << 10
		start, buf := time.Now(), make([]byte, chunk)
		for sent := 0; ; {
			n, err := io.ReadFull(r, buf)
			if n > 0 {
				if _, werr := pw.Write(buf[:n]); werr != nil {
					return
				}
				sent += n
				time.Sleep(time.Until(start.Add(time.Duration(float64(d) * float64(sent) / helperBytes))))
			}
			if err != nil {
				pw.Close()
				return
			}
		}
	}()
	return pr
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

// pcapRun is dpfw replaying a capture into port a of a two-port net_pcap
// link a–b (port b receives nothing).
type pcapRun struct {
	*proc
	sent      int
	out, back string // what b and a transmitted
}

// startPcap writes frames as port a's capture and starts dpfw on it, with
// cfg's changes (nil: none) applied to e2e.Base and the pcap pair; without
// rules it forwards everything (the test compares what is forwarded).
func startPcap(t *testing.T, frames [][]byte, change func(*config.Config)) *pcapRun {
	t.Helper()
	cfg := e2e.Base()
	f, err := e2e.PcapPair(&cfg, t.TempDir(), frames)
	if err != nil {
		t.Fatal(err)
	}
	if change != nil {
		change(&cfg)
	}
	return &pcapRun{proc: startDPFW(t, cfg), sent: len(frames), out: f.Out, back: f.Back}
}

// freeUDP is e2e.FreeUDP, failing the test on error.
func freeUDP(t *testing.T) string {
	t.Helper()
	a, err := e2e.FreeUDP()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// withRules is a config change setting an inline iptables rule set.
func withRules(iptables string) func(*config.Config) {
	return func(c *config.Config) { e2e.Iptables(c, iptables, "") }
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
