// Command perf is dpfw's throughput runner. It generates a workload pcap
// (64-byte UDP, N flows), then feeds it through net_pcap with infinite_rx=1
// into net_null0,no-rx=1 — first through dpdk-testpmd (io, then mac forward
// mode) and then through dpfw, one after the other in the same run — and
// prints Mpps for each and the ratio dpfw/testpmd.
//
//	go run ./perf -flows 1024,65536 -seconds 5
//
// Needs root and DPDK (make deps); uses hugepages when mounted (make hugepages).
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/internal/e2e"
	"github.com/dpfw/dpfw/perf/pcapgen"
)

func main() {
	flows := flag.String("flows", "1024,65536", "comma-separated flow counts, one workload each")
	workloads := flag.String("workloads", "pass", "comma-separated: pass (no rules: decode, track, forward), ct (UDP flows in both directions through a stateful rule set), churn (TCP connections opened and closed on every replay), ct1 (UDP flows in one direction through the stateful rule set: N tracked connections from N frames), flood (SYNs from N distinct sources into a table of N/16 entries, every one an early drop, with an established connection's packets interleaved)")
	seconds := flag.Int("seconds", 5, "measurement window per system")
	warmup := flag.Int("warmup", 2, "seconds to let each system settle before measuring")
	dpfwBin := flag.String("dpfw", "bin/dpfw", "dpfw binary")
	testpmd := flag.String("testpmd", "dpdk-testpmd", "testpmd binary")
	cpu := flag.Int("cpu", runtime.NumCPU()-1, "CPU for the forwarding lcore of both systems")
	noHuge := flag.Bool("no-huge", false, "run both systems with --no-huge")
	out := flag.String("out", "", "append a Markdown results row per workload to this file")
	rounds := flag.Int("rounds", 5, "alternate testpmd io and dpfw this many times; the median ratio is reported")
	flag.StringVar(&checksumMode, "checksum", "", "dataplane.checksum for dpfw (full, hardware, off; empty: dpfw's default)")
	reloadLoadFlag := flag.Duration("reload-load", 0, "also run dpfw while reloading its rules (two rule sets allowing the same traffic) at this interval, and report throughput and drops")
	flag.StringVar(&profileDir, "profile", "", "record the forwarding CPU with Linux perf (perf record -g) during each dpfw window, into DIR/<workload>-<flows>-<n>.data (read with perf report -i)")
	flag.StringVar(&pgoFile, "pgo", "", "profile dpfw's Go code (run --cpuprofile) in every dpfw window, stop it with SIGINT, and merge the profiles into this file: the profile-guided optimisation input (make pgo writes cmd/dpfw/default.pgo)")
	controlLoad := flag.Duration("control-load", 0, "also run dpfw while scraping /metrics and listing every connection (dpfw conntrack list) at this interval, and report the throughput change")
	ruleSizes := flag.String("rulesets", "", "instead of traffic: compare dpfw rules check with iptables-restore (in a throwaway network namespace) on generated rule sets of these sizes, comma-separated (e.g. 10000,100000)")
	reloadPadN := flag.Int("reload-rules", 0, "with -reload-load: put this many non-matching rules first in INPUT of both reloaded rule sets (a reload at rule-set scale)")
	syncFlag := flag.String("sync", "", "also run dpfw without and with state sync (notrack or ftfw) to a peer node on loopback that acknowledges, and report the forwarding change, the connections per second and the sync traffic per connection (use with -workloads churnmix)")
	scaling := flag.Bool("scaling", false, "also run dpfw on a two-queue source (the frames split over two rx_pcap files) with one worker, two with steering and two without, and report two workers ÷ one")
	flag.Parse()
	if profileDir != "" {
		check(os.MkdirAll(profileDir, 0o755))
	}
	o := &runOpts{dpfw: *dpfwBin, testpmd: *testpmd, cpu: *cpu, noHuge: *noHuge, rounds: *rounds,
		warmup: time.Duration(*warmup) * time.Second, window: time.Duration(*seconds) * time.Second,
		controlLoad: *controlLoad, reloadLoad: *reloadLoadFlag, scaling: *scaling, syncMode: *syncFlag}
	dir, err := os.MkdirTemp("", "dpfw-perf-")
	check(err)
	defer os.RemoveAll(dir)
	if pgoFile != "" {
		defer mergePGO() // before the directory goes
	}
	o.dir = dir
	host, _ := os.Hostname()
	fmt.Printf("machine: %s, %d CPUs, %s; forwarding lcore on CPU %d; hugepages: %v\n",
		host, runtime.NumCPU(), cpuModel(), *cpu, !*noHuge)
	var rows []string
	if *ruleSizes != "" {
		var sizes []int
		for _, f := range strings.Split(*ruleSizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			check(err)
			sizes = append(sizes, n)
		}
		rows = ruleScale(*dpfwBin, dir, sizes, *rounds)
		writeRows(*out, rows)
		return
	}
	if *reloadPadN > 0 {
		pad := padRules(*reloadPadN)
		for i := range reloadRules {
			reloadRules[i] = pad + reloadRules[i]
		}
	}
	for _, wl := range strings.Split(*workloads, ",") {
		for _, f := range strings.Split(*flows, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			check(err)
			rows = append(rows, o.measure(wl, n))
		}
	}
	fmt.Println("(ratio: dpfw / testpmd io, each round measured back to back)")
	writeRows(*out, rows)
}

// writeRows appends Markdown rows to the file out ("": none).
func writeRows(out string, rows []string) {
	if out == "" {
		return
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	check(err)
	for _, r := range rows {
		fmt.Fprintln(f, r)
	}
	check(f.Close())
}

// runOpts are the command line's settings for every measurement.
type runOpts struct {
	dpfw, testpmd, dir      string
	cpu, rounds             int
	noHuge                  bool
	warmup, window          time.Duration
	controlLoad, reloadLoad time.Duration
	scaling                 bool
	syncMode                string
}

// workload builds a workload's frames for n flows and sets the globals
// runDPFW reads; it returns the rules (iptables, "" for none: dpfw
// forwards everything) and the packets per connection (churn: for
// connections per second; 0 otherwise).
func workload(wl string, n int) (frames [][]byte, rules string, perConn int) {
	switch wl {
	case "pass":
		frames = pcapgen.UDPFlows(n, false)
	case "ct":
		frames = pcapgen.UDPFlows(n, true)
		rules = statefulRules
		smallMbufs = n > 262144
		settle = true
	case "ct1":
		// One direction: N tracked (unreplied) connections from N
		// frames, for control-plane tests at 1 M connections.
		frames = pcapgen.UDPFlows(n, false)
		rules = statefulRules
		smallMbufs = n > 262144
		settle = true
	case "churnmix":
		// n connections, each after 40 frames of established UDP flows:
		// one frame in six is a connection's (some 100 K new connections
		// a second at 6 Mpps).
		frames = churnMix(n, 40)
		rules = statefulRules
		smallMbufs = len(frames) > 262144
		ctCapacity = 4 * (n + 4096) // the filler's 4,096 flows, the connections and their TIME_WAIT: no early drops
		perConn = 48                // for connections per second: 8 frames of a connection in every 48
	case "churn":
		frames = pcapgen.TCPChurn(n)
		rules = statefulRules
		perConn = 8
		// 8 frames a connection: past 32 K connections the pcap needs the
		// small mbufs (and memory sized to them) as ct does.
		smallMbufs = len(frames) > 262144
	case "flood":
		frames, _ = pcapgen.SYNFlood(n, 64)
		rules = pcapgen.FloodRules
		ctCapacity = max(n/16, 1024)
		smallMbufs = true
	default:
		check(fmt.Errorf("unknown workload %q", wl))
	}
	if smallMbufs {
		// About 700 bytes per small mbuf, all in.
		memMB = max(1024, len(frames)*700>>20+400)
	}
	return frames, rules, perConn
}

// measure runs workload wl with n flows: rounds alternating testpmd io and
// dpfw, then the control and reload loads if asked. It returns the
// results row.
func (o *runOpts) measure(wl string, n int) string {
	frames, rules, perConn := workload(wl, n)
	pcap := filepath.Join(o.dir, fmt.Sprintf("%s-%d.pcap", wl, n))
	check(pcapgen.Write(pcap, frames))
	name := fmt.Sprintf("%s/%dflows", wl, n)
	profileName = fmt.Sprintf("%s-%d", wl, n)
	dpfwRun := func() float64 {
		d, err := runDPFW(o.dpfw, o.dir, pcap, len(frames), n, rules, o.cpu, o.noHuge, o.warmup, o.window)
		check(err)
		return d
	}
	var ios, ds, ratios []float64
	for r := 0; r < o.rounds; r++ {
		io, err := runTestpmd(o.testpmd, "io", pcap, len(frames), o.cpu, o.noHuge, o.warmup, o.window)
		check(err)
		d := dpfwRun()
		ios, ds, ratios = append(ios, io), append(ds, d), append(ratios, d/io)
		cache := ""
		if lastCacheHits >= 0 {
			cache = fmt.Sprintf(" (verdict cache hits %.1f%%)", 100*lastCacheHits)
		}
		fmt.Printf("%-22s round %d: testpmd io %.2f, dpfw %.2f, ratio %.2f%s\n", name, r+1, io, d, d/io, cache)
	}
	io, d, ratio := median(ios), median(ds), median(ratios)
	o.loads(name, dpfwRun)
	o.syncLoad(name, dpfwRun, perConn)
	if o.scaling {
		o.scale(name, frames, n, rules)
	}
	extra := ""
	if wl == "flood" {
		extra = fmt.Sprintf(", established flow: %.0f packets accepted, %.0f lost; table max %d of %d", floodEst, floodLost, lastEntries, ctCapacity)
	}
	ctCapacity, smallMbufs, memMB, settle = 0, false, 1024, false
	if perConn > 0 {
		extra = fmt.Sprintf(", %.0f connections/s", d*1e6/float64(perConn))
	}
	if mhz := cpuMHz(); mhz > 0 && d > 0 {
		extra += fmt.Sprintf(", %.0f cycles/packet at %.0f MHz", mhz/d, mhz)
	}
	fmt.Printf("%-22s dpfw %.2f Mpps, testpmd io %.2f Mpps, ratio %.2f (median of %d rounds)%s\n", name, d, io, ratio, o.rounds, extra)
	return fmt.Sprintf("| %s | %s | %.2f | %.2f | %.2f |%s", time.Now().Format("2006-01-02"), name, io, d, ratio, extra)
}

// loads runs dpfw alone and then under the control load (scrapes and
// listings) and the reload load, when asked, and prints the change.
func (o *runOpts) loads(name string, dpfwRun func() float64) {
	// quietThenLoaded runs dpfw alone, then with *load set to every
	// (the control or reload load runDPFW applies), and returns both rates.
	quietThenLoaded := func(load *time.Duration, every time.Duration) (float64, float64) {
		quiet := dpfwRun()
		*load = every
		busy := dpfwRun()
		*load = 0
		return quiet, busy
	}
	if o.controlLoad > 0 {
		var effects []float64
		for r := 0; r < o.rounds; r++ {
			quiet, busy := quietThenLoaded(&ctlRate, o.controlLoad)
			effects = append(effects, busy/quiet-1)
			fmt.Printf("%-22s control load round %d: quiet %.2f Mpps, scraped+listed every %v %.2f Mpps (%+.1f%%)\n",
				name, r+1, quiet, o.controlLoad, busy, 100*(busy/quiet-1))
		}
		fmt.Printf("%-22s control load: median change %+.1f%% (%d connections tracked)\n", name, 100*median(effects), lastEntries)
	}
	for r := 0; o.reloadLoad > 0 && r < o.rounds; r++ {
		quiet, busy := quietThenLoaded(&reloadRate, o.reloadLoad)
		fmt.Printf("%-22s reload load round %d: quiet %.2f Mpps, reloading every %v %.2f Mpps (%+.1f%%); %d reloads, %.0f packets dropped\n",
			name, r+1, quiet, o.reloadLoad, busy, 100*(busy/quiet-1), reloadsDone, reloadDrops)
	}
}

// The scaling runs' settings, read by perfConfig: a second rx_pcap file
// for the source port, the worker CPUs and the steering mode.
var (
	secondPcap string
	workerCPUs []int
	steering   string
)

// scale runs dpfw on a two-queue source (frames split by index parity
// over two rx_pcap files) with one worker, then two with steering, then
// two without, o.rounds times, and prints the medians: two workers ÷ one,
// and the share of packets steered.
func (o *runOpts) scale(name string, frames [][]byte, flows int, rules string) {
	var qa, qb [][]byte
	for i, f := range frames {
		if i%2 == 0 {
			qa = append(qa, f)
		} else {
			qb = append(qb, f)
		}
	}
	a, b := filepath.Join(o.dir, "scale-a.pcap"), filepath.Join(o.dir, "scale-b.pcap")
	check(pcapgen.Write(a, qa))
	check(pcapgen.Write(b, qb))
	variants := []struct {
		name  string
		cpus  []int
		steer string
	}{{"1 worker", []int{o.cpu}, "off"}, {"2 workers, steering", []int{1 - o.cpu%2, o.cpu}, "on"}, {"2 workers, no steering", []int{1 - o.cpu%2, o.cpu}, "off"}}
	rates := make([][]float64, len(variants))
	for r := 0; r < o.rounds; r++ {
		for i, v := range variants {
			secondPcap, workerCPUs, steering = b, v.cpus, v.steer
			d, err := runDPFW(o.dpfw, o.dir, a, len(frames), flows, rules, o.cpu, o.noHuge, o.warmup, o.window)
			check(err)
			rates[i] = append(rates[i], d)
			fmt.Printf("%-22s scaling round %d: %s %.2f Mpps (steered %.0f%%)\n", name, r+1, v.name, d, 100*lastSteered)
		}
	}
	secondPcap, workerCPUs, steering = "", nil, ""
	one := median(rates[0])
	fmt.Printf("%-22s scaling: 1 worker %.2f Mpps; 2 workers with steering %.2f (%.2f×), without %.2f (%.2f×) (medians of %d rounds)\n",
		name, one, median(rates[1]), median(rates[1])/one, median(rates[2]), median(rates[2])/one, o.rounds)
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf:", err)
		os.Exit(1)
	}
}

// cpuMHz is the CPU's clock as /proc/cpuinfo says (0 if it does not): on
// the VMs measured here, the TSC's.
func cpuMHz() float64 {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "cpu MHz"); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":")), 64)
			return f
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown CPU"
}

func ealMem(noHuge bool) []string {
	if noHuge {
		return []string{"--no-huge", "-m", strconv.Itoa(memMB)}
	}
	// As dpfw does: no hugepage files left behind in /dev/hugepages.
	return []string{"--huge-unlink", "-m", strconv.Itoa(memMB)}
}

var txPPS = regexp.MustCompile(`Tx-pps:\s+(\d+)`)

// runTestpmd forwards the pcap into net_null with testpmd and returns the
// mean of its per-second Tx-pps reports after warm-up.
func runTestpmd(bin, mode, pcap string, packets, cpu int, noHuge bool, warmup, measure time.Duration) (float64, error) {
	main := 0
	if cpu == 0 {
		main = 1
	}
	args := append([]string{"--file-prefix", fmt.Sprintf("perf-tpmd-%d", os.Getpid()), "-l", fmt.Sprintf("%d,%d", main, cpu), "--main-lcore", strconv.Itoa(main), "--no-pci",
		"--vdev", "net_pcap0,rx_pcap=" + pcap + ",infinite_rx=1", "--vdev", "net_null0,no-rx=1"}, ealMem(noHuge)...)
	// net_pcap's infinite_rx holds the whole pcap in mbufs.
	args = append(args, "--", "--forward-mode="+mode, "--stats-period", "1", "--nb-cores=1", "--no-lsc-interrupt",
		fmt.Sprintf("--total-num-mbufs=%d", packets+32768))
	if smallMbufs {
		args = append(args, "--mbuf-size=512")
	}
	ctx, cancel := context.WithTimeout(context.Background(), warmup+measure+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "stdbuf", append([]string{"-oL", bin}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = io.Discard
	cmd.Stdin = nil
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w (install DPDK: make deps)", bin, err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGINT); _ = cmd.Wait() }()
	// Each stats period prints Tx-pps for port 0 (pcap) then port 1 (null);
	// the forwarded rate is port 1's.
	sc := bufio.NewScanner(stdout)
	var samples []float64
	start := time.Now()
	k := 0
	for sc.Scan() {
		m := txPPS.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		k++
		if k%2 == 1 {
			continue
		}
		if time.Since(start) < warmup {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		samples = append(samples, v/1e6)
		if time.Since(start) >= warmup+measure {
			break
		}
	}
	if len(samples) == 0 {
		return 0, errors.New("testpmd printed no Tx-pps after warm-up")
	}
	var sum float64
	for _, s := range samples {
		sum += s
	}
	return sum / float64(len(samples)), nil
}

// runDPFW forwards the pcap into net_null with dpfw and returns the sink
// port's tx rate over the measurement window, read from /metrics.
// statefulRules is the rule set of the ct and churn workloads: replies and
// NEW connections from the client range pass, everything else is dropped.
const statefulRules = `-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -s 198.18.0.0/16 -m conntrack --ctstate NEW -j ACCEPT
`

// reloadRules are the two rule files the reload load alternates between:
// both allow every packet of the workloads (B adds rules that match none),
// so a reload must not cost a packet.
var reloadRules = [2]string{`-P INPUT DROP
-P OUTPUT DROP
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -s 198.18.0.0/16 -m conntrack --ctstate NEW -j ACCEPT
`, `-P INPUT DROP
-P OUTPUT DROP
-A INPUT -p tcp --dport 23 -j DROP
-A INPUT -s 198.18.0.0/16 -m conntrack --ctstate NEW -j ACCEPT
-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A INPUT -p udp --dport 9 -j DROP
`}

func runDPFW(bin, dir, pcap string, packets, flows int, rules string, cpu int, noHuge bool, warmup, measure time.Duration) (float64, error) {
	cfg := perfConfig(pcap, packets, flows, rules, cpu, noHuge)
	rulesPath := filepath.Join(dir, "reload.rules")
	if reloadRate > 0 {
		if err := os.WriteFile(rulesPath, []byte(reloadRules[0]), 0o644); err != nil {
			return 0, err
		}
		cfg.Rules.Iptables, cfg.Rules.File = "", rulesPath
	}
	var extra []string
	if pgoFile != "" {
		pgoProfiles = append(pgoProfiles, filepath.Join(dir, fmt.Sprintf("cpu-%d.pprof", len(pgoProfiles))))
		extra = []string{"--cpuprofile", pgoProfiles[len(pgoProfiles)-1]}
	}
	p, err := e2e.StartWith(bin, dir, cfg, extra...)
	if err != nil {
		return 0, err
	}
	defer p.Kill()
	if pgoFile != "" {
		defer func() { _ = p.Stop() }() // the profile is written on a clean stop
	}
	time.Sleep(warmup)
	if settle {
		waitSettled(p)
	}
	a, err := p.Metric("dpfw_port_tx_packets_total", `port="sink"`)
	if err != nil {
		return 0, err
	}
	h0, c0 := judged(p)
	w0 := windowStart(p)
	t0 := time.Now()
	stop := make(chan struct{})
	if ctlRate > 0 {
		go controlLoad(p.API, ctlRate, stop)
	}
	var d0 float64
	reloaded := make(chan int, 1)
	if reloadRate > 0 {
		d0, _ = p.Metric("dpfw_worker_dropped_packets_total")
		go reloadLoad(p.API, rulesPath, reloadRate, stop, reloaded)
	}
	var rec *exec.Cmd
	if profileDir != "" {
		if rec, err = startProfile(cpu, measure); err != nil {
			return 0, err
		}
	}
	time.Sleep(measure)
	if rec != nil {
		_ = rec.Wait()
	}
	close(stop)
	if reloadRate > 0 {
		reloadsDone = <-reloaded
		d1, _ := p.Metric("dpfw_worker_dropped_packets_total")
		reloadDrops = d1 - d0
	}
	scrapeAfter(p)
	b, err := p.Metric("dpfw_port_tx_packets_total", `port="sink"`)
	if err != nil {
		return 0, err
	}
	rate := (b - a) / time.Since(t0).Seconds() / 1e6
	windowEnd(p, w0)
	h1, c1 := judged(p)
	if rx, _ := p.Metric("dpfw_worker_rx_packets_total"); rx > 0 {
		st, _ := p.Metric("dpfw_worker_steered_packets_total")
		lastSteered = st / rx
	}
	lastCacheHits = -1 // no packet classified or judged from the cache
	if n := h1 - h0 + c1 - c0; n > 0 {
		lastCacheHits = (h1 - h0) / n
	}
	return rate, p.Stop()
}

// judged returns how many packets were judged from the verdict cache and
// how many were classified, so far.
func judged(p *e2e.Proc) (hits, classified float64) {
	hits, _ = p.Metric("dpfw_worker_verdict_cache_hits_total")
	classified, _ = p.Metric("dpfw_worker_classified_packets_total")
	return hits, classified
}

// perfConfig is dpfw's config for a measurement: the pcap replayed into
// a null sink through the rules (iptables; "": none).
func perfConfig(pcap string, packets, flows int, rules string, cpu int, noHuge bool) config.Config {
	cfg := config.Default()
	cfg.EAL.MemoryMB = memMB
	if noHuge {
		cfg.EAL.Hugepages = "no"
	} else {
		cfg.EAL.Hugepages = "yes"
	}
	// net_pcap's infinite_rx holds the whole pcap in mbufs.
	cfg.Mempool.Mbufs = packets + 16384
	if smallMbufs {
		cfg.Mempool.DataRoom = 512
	}
	e2e.SourceSink(&cfg, pcap)
	cfg.Workers.CPUs = []int{cpu}
	if secondPcap != "" {
		cfg.Ports[0].Device = "net_pcap0,rx_pcap=" + pcap + ",rx_pcap=" + secondPcap + ",infinite_rx=1"
		cfg.Workers.CPUs, cfg.Workers.Steering = workerCPUs, steering
	}
	cfg.Conntrack.Capacity = max(2*flows, 1024)
	if ctCapacity > 0 {
		cfg.Conntrack.Capacity = ctCapacity
	}
	cfg.Log.Level = "warn"
	if checksumMode != "" {
		cfg.Dataplane.Checksum = checksumMode
	}
	if rules == "" {
		cfg.Rules.AllowEmpty = true
	} else {
		e2e.Iptables(&cfg, rules, "")
	}
	syncConfig(&cfg)
	return cfg
}

// waitSettled waits until (nearly) every packet's verdict comes from its
// connection's cache: until the first replays (NEW, then the first
// ESTABLISHED packet of each direction) are over; with millions of flows
// that takes longer than the warm-up.
func waitSettled(p *e2e.Proc) {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		_, c0 := judged(p)
		p0, _ := p.Metric("dpfw_port_tx_packets_total", `port="sink"`)
		time.Sleep(500 * time.Millisecond)
		_, c1 := judged(p)
		p1, _ := p.Metric("dpfw_port_tx_packets_total", `port="sink"`)
		if c1-c0 <= (p1-p0)/1000 {
			break
		}
	}
}

// startProfile records the forwarding CPU with Linux perf for the window.
func startProfile(cpu int, measure time.Duration) (*exec.Cmd, error) {
	profileN++
	out := filepath.Join(profileDir, fmt.Sprintf("%s-%d.data", profileName, profileN))
	rec := exec.Command("perf", "record", "-q", "-g", "-C", strconv.Itoa(cpu), "-o", out, "--", "sleep", strconv.Itoa(int(measure.Seconds())))
	rec.Stdout, rec.Stderr = io.Discard, os.Stderr
	if err := rec.Start(); err != nil {
		return nil, fmt.Errorf("-profile: starting perf record (apt-get install linux-perf): %w", err)
	}
	return rec, nil
}

// scrapeAfter records the figures the workloads report after a window:
// connections tracked and, for the flood, the established flow's fate.
func scrapeAfter(p *e2e.Proc) {
	proto := "udp"
	if ctCapacity > 0 {
		proto = "tcp"
	}
	if e, err := p.Metric("dpfw_conntrack_entries", `protocol="`+proto+`"`, `worker="0"`); err == nil {
		lastEntries = int(e)
	}
	if ctCapacity > 0 {
		floodEst, _ = p.Metric("dpfw_rule_packets_total", `comment="est"`)
		floodLost, _ = p.Metric("dpfw_rule_packets_total", `comment="est-lost"`)
	}
}

func reloadLoad(addr, rules string, every time.Duration, stop <-chan struct{}, done chan<- int) {
	ok := 0
	t := time.NewTicker(every)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-stop:
			done <- ok
			return
		case <-t.C:
		}
		if os.WriteFile(rules, []byte(reloadRules[i%2]), 0o644) != nil {
			continue
		}
		resp, err := http.Post("http://"+addr+"/api/reload", "application/json", nil)
		if err == nil {
			if resp.StatusCode == 200 {
				ok++
			}
			resp.Body.Close()
		}
	}
}

// controlPaths are what the control load fetches (PERF_CONTROL_PATHS,
// comma-separated, overrides).
var controlPaths = func() []string {
	if v := os.Getenv("PERF_CONTROL_PATHS"); v != "" {
		return strings.Split(v, ",")
	}
	return []string{"/metrics", "/api/conntrack?limit=10000000&format=text"}
}()

// ctlRate, when set, makes runDPFW load the control side during the window.
var (
	ctlRate     time.Duration
	lastEntries int
	// lastSteered is the share of received packets handed to the other
	// worker, in the last dpfw window.
	lastSteered float64
	// lastCacheHits is the share of judged packets whose verdict came from
	// their connection's cache, in the last dpfw window (-1: no tracking).
	lastCacheHits float64
	// settle makes runDPFW wait, after the warm-up, until packets are
	// judged from the verdict cache (the ct workloads' steady state).
	settle bool
	// ctCapacity overrides the table size and smallMbufs the mbuf size
	// (512 bytes, for pcaps of a million frames) for one workload;
	// floodEst and floodLost are the flood workload's established-flow
	// rule counters.
	checksumMode string
	// pgoFile, when set, makes runDPFW profile dpfw's Go code into
	// pgoProfiles, merged into pgoFile at the end.
	pgoFile     string
	pgoProfiles []string
	// profileDir, when set, makes runDPFW record the worker CPU with perf;
	// profileName names the next recording.
	profileDir, profileName string
	profileN                int
	// reloadRate, when set, makes runDPFW reload the rules at that interval
	// during the window; reloadsDone and reloadDrops are what it saw.
	reloadRate  time.Duration
	reloadsDone int
	reloadDrops float64
	ctCapacity  int
	smallMbufs  bool
	// memMB is the EAL memory of both systems (more for pcaps of millions
	// of frames).
	memMB               = 1024
	floodEst, floodLost float64
)

// controlLoad scrapes /metrics and lists every connection at each interval,
// as an operator's Prometheus and a "dpfw conntrack list" would.
func controlLoad(addr string, every time.Duration, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	c := &http.Client{Timeout: 30 * time.Second}
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, path := range controlPaths {
				if resp, err := c.Get("http://" + addr + path); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}
}

// mergePGO merges the runs' CPU profiles into pgoFile (go tool pprof
// -proto), the input of a profile-guided build.
func mergePGO() {
	var have []string
	for _, f := range pgoProfiles {
		if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
			have = append(have, f)
		}
	}
	if len(have) == 0 {
		fmt.Fprintln(os.Stderr, "perf: -pgo: no profile was written")
		return
	}
	out, err := exec.Command("go", append([]string{"tool", "pprof", "-proto"}, have...)...).Output()
	if err == nil {
		err = os.WriteFile(pgoFile, out, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "perf: -pgo:", err)
		return
	}
	fmt.Printf("pgo: %d profiles merged into %s (%d bytes)\n", len(have), pgoFile, len(out))
}
