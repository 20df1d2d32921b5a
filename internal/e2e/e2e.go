// Package e2e runs dpfw end to end, for its tests (cmd/dpfw) and its
// throughput runner (perf/): a dpfw process started from a config.Config
// value, waited for until it is ready, read through its metrics and API,
// and stopped with its packet and mbuf accounting checked. Namespaces,
// taps and pcap ports are set up here too. Nothing here is a test: every
// failure is an error for the caller to report.
package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
	"time"

	"github.com/dpfw/dpfw/control/config"
)

// Proc is a running dpfw.
type Proc struct {
	// Bin is the dpfw binary, Path its config file and Config what was
	// written there (with the API address and file prefix Start chose).
	Bin, Path string
	Config    config.Config
	// API is the metrics and API address (host:port); "" when disabled.
	API string
	// Stdout and Stderr are what dpfw printed so far.
	Stdout, Stderr *Buffer

	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// StartTimeout bounds how long Start waits for dpfw to be ready.
const StartTimeout = 20 * time.Second

// Start writes cfg into dir and runs "bin run" on it, returning once every
// port is started, every worker polls and the API listens (--ready-file),
// never by waiting for interfaces to appear. It gives the process its own
// EAL file prefix and, unless the API is disabled (metrics.listen ""), a
// free loopback port.
func Start(bin, dir string, cfg config.Config) (*Proc, error) { return StartWith(bin, dir, cfg) }

// StartWith is Start with more arguments to dpfw run.
func StartWith(bin, dir string, cfg config.Config, args ...string) (*Proc, error) {
	if cfg.Metrics.Listen != "" {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		cfg.Metrics.Listen = addr
	}
	cfg.EAL.FilePrefix = fmt.Sprintf("dpfwt%d", rand.IntN(1<<30))
	text, err := config.Marshal(&cfg)
	if err != nil {
		return nil, err
	}
	p := &Proc{Bin: bin, Path: filepath.Join(dir, "dpfw.yaml"), Config: cfg, API: cfg.Metrics.Listen,
		Stdout: new(Buffer), Stderr: new(Buffer), done: make(chan struct{})}
	if err := os.WriteFile(p.Path, text, 0o644); err != nil {
		return nil, err
	}
	ready := filepath.Join(dir, "ready")
	_ = os.Remove(ready)
	p.cmd = exec.Command(bin, append([]string{"run", "--config", p.Path, "--ready-file", ready}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.Stdout, p.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w (build it: make build)", bin, err)
	}
	go func() { p.exitErr = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ready); err != nil {
		p.Kill()
		return nil, err
	}
	return p, nil
}

func (p *Proc) waitReady(ready string) error {
	deadline := time.Now().Add(StartTimeout)
	for {
		if _, err := os.Stat(ready); err == nil {
			break
		}
		select {
		case <-p.done:
			return fmt.Errorf("dpfw exited during start-up: %v\n%s", p.exitErr, p.Stderr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dpfw did not start in %v:\n%s", StartTimeout, p.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p.API == "" {
		return nil
	}
	for _, probe := range []string{"/readyz", "/healthz"} {
		resp, err := http.Get("http://" + p.API + probe)
		if err != nil {
			return fmt.Errorf("GET %s once ready: %w", probe, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET %s once ready: %s", probe, resp.Status)
		}
	}
	return nil
}

// FreeAddr returns a loopback address with a port nobody listens on.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// FreeUDP returns a loopback UDP address nobody listens on.
func FreeUDP() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// StopTimeout bounds how long Stop waits for dpfw to exit.
const StopTimeout = 20 * time.Second

// Stop sends SIGINT and requires a clean exit with every mbuf returned to
// the pool and the packet accounting balanced (rx = tx + dropped +
// steered): from the log lines at log level info or debug, from the exit
// status and the absence of an accounting error above.
func (p *Proc) Stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		p.Kill()
		return fmt.Errorf("dpfw did not stop within %v of SIGINT", StopTimeout)
	}
	log := p.Stderr.String()
	// dpfw exits non-zero on an mbuf leak; it logs the packet accounting
	// at info level when it balances and as an error when it does not.
	verbose := p.Config.Log.Level == "debug" || p.Config.Log.Level == "info"
	balanced := strings.Contains(log, "unaccounted=0") || strings.Contains(log, `"unaccounted":0,`)
	switch {
	case p.exitErr != nil:
		return fmt.Errorf("dpfw exited with %v:\n%s", p.exitErr, log)
	case verbose && !strings.Contains(log, "all mbufs returned to the pool"):
		return fmt.Errorf("dpfw did not report every mbuf returned:\n%s", log)
	case (verbose || strings.Contains(log, "packet accounting")) && !balanced:
		return fmt.Errorf("dpfw's packet accounting (rx = tx + dropped + steered) does not balance:\n%s", log)
	}
	return nil
}

// Kill ends dpfw at once, if it still runs, and waits for it.
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Done is closed when dpfw has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to dpfw.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Pid is dpfw's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// WaitLog waits up to d for s in dpfw's log and reports whether it came.
func (p *Proc) WaitLog(s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(p.Stderr.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// Metric returns the sum of every series of a metric whose labels contain
// every one of sel (labels are printed in alphabetical order), 0 if none.
func (p *Proc) Metric(name string, sel ...string) (float64, error) {
	if p.API == "" {
		return 0, errors.New("dpfw runs without its API (metrics.listen is empty)")
	}
	resp, err := http.Get("http://" + p.API + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("scraping dpfw: %w", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := seriesValue(sc.Text(), name, sel); ok {
			sum += v
		}
	}
	return sum, sc.Err()
}

func seriesValue(line, name string, sel []string) (float64, bool) {
	if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
		return 0, false
	}
	for _, s := range sel {
		if !strings.Contains(line, s) {
			return 0, false
		}
	}
	f := strings.Fields(line)
	v, err := strconv.ParseFloat(f[len(f)-1], 64)
	return v, err == nil
}

// WaitMetric waits up to d until Metric(name, sel...) ≥ want and returns
// its last value.
func (p *Proc) WaitMetric(name string, sel []string, want float64, d time.Duration) (float64, error) {
	deadline := time.Now().Add(d)
	for {
		v, err := p.Metric(name, sel...)
		if err != nil || v >= want || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CLI runs a dpfw client subcommand against p's API.
func (p *Proc) CLI(args ...string) (string, error) {
	out, err := exec.Command(p.Bin, append(args, "--api", p.API)...).CombinedOutput()
	return string(out), err
}

// Rewrite replaces the config file's contents as an editor would: a
// temporary file renamed over the original.
func (p *Proc) Rewrite(text []byte) error {
	tmp := p.Path + ".tmp"
	if err := os.WriteFile(tmp, text, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p.Path)
}

// Reconfigure rewrites the config file with cfg (keeping the API address
// and file prefix dpfw runs with) and makes it p.Config.
func (p *Proc) Reconfigure(cfg config.Config) error {
	cfg.Metrics.Listen, cfg.EAL.FilePrefix = p.Config.Metrics.Listen, p.Config.EAL.FilePrefix
	text, err := config.Marshal(&cfg)
	if err != nil {
		return err
	}
	if err := p.Rewrite(text); err != nil {
		return err
	}
	p.Config = cfg
	return nil
}

// Text returns the config file dpfw was started with (or last
// reconfigured to).
func (p *Proc) Text() string {
	b, _ := config.Marshal(&p.Config)
	return string(b)
}

// Dump returns dpfw's log and its non-zero dpfw_ metrics, for failure
// messages.
func (p *Proc) Dump() string {
	var b strings.Builder
	b.WriteString(p.Stderr.String())
	if p.API == "" {
		return b.String()
	}
	if resp, err := http.Get("http://" + p.API + "/metrics"); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "dpfw_") && !strings.HasSuffix(l, " 0") {
				b.WriteString(l + "\n")
			}
		}
		resp.Body.Close()
	}
	return b.String()
}

// Buffer is a bytes.Buffer safe for one writer and concurrent readers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
