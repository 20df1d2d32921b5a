package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/dpfw/dpfw/configs"
	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/daemon"
	"github.com/dpfw/dpfw/control/metrics"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

func dpdkVersion() string { return "22.11" }

// loadConfig loads path, or the embedded default when path is "".
func loadConfig(path string) (*config.Config, string, error) {
	if path == "" {
		cfg, err := config.Load(configs.DefaultName, configs.Default)
		return cfg, configs.DefaultName, err
	}
	cfg, err := config.LoadFile(path)
	return cfg, path, err
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func checkCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate a configuration without touching DPDK",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, name, err := loadConfig(path)
			if err != nil {
				return err
			}
			f, err := ruleset.Compile(cfg, ruleset.ConfigPortIDs(cfg), 1)
			if err != nil {
				return err
			}
			if err := ruleset.MemoryPlan(cfg, f).Fits(ruleset.MachineMemory()); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			for _, w := range cfg.Warnings() {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s: %s\n", where(name, cfg, w.Key), w.Key, w.Msg)
			}
			var failed []string
			for _, pf := range daemon.Preflight(cfg, daemon.LocalHost(), ruleset.MemoryPlan(cfg, f).Total()) {
				kind := "warning"
				if !pf.Warning {
					kind = "error"
					failed = append(failed, pf.Key)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s: %s: %s\n", where(name, cfg, pf.Key), kind, pf.Key, pf.Msg)
			}
			if len(failed) > 0 {
				return fmt.Errorf("%s: the machine is not ready for this config (%s): see above", name, strings.Join(failed, ", "))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK: %d ports, %d links, %d workers, %d rules; memory %s\n",
				name, len(cfg.Ports), len(cfg.Links), len(cfg.Workers.CPUs), f.Stats.Rules, ruleset.MemoryPlan(cfg, f))
			return nil
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded configs/default.yaml)")
	return cmd
}

// where is "file:line" of a config key, or the file when the key is not
// written in it (a default).
func where(name string, cfg *config.Config, key string) string {
	if l := config.LineOf(cfg.Lines, key); l > 0 {
		return fmt.Sprintf("%s:%d", name, l)
	}
	return name
}

func runCmd() *cobra.Command {
	var path string
	var dryRun bool
	var cpuProfile, readyFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the firewall until SIGINT or SIGTERM",
		Long: `Run starts DPDK with the configured ports and workers and forwards traffic
between linked ports until SIGINT or SIGTERM, then stops the ports, prints the
final counters and checks that every mbuf came back to the pool.

With no --config it runs the embedded default (configs/default.yaml): two
net_tap ports, dpfw-out and dpfw-in, joined as one link.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, name, err := loadConfig(path)
			if err != nil {
				return err
			}
			if dryRun {
				printPlan(cmd.OutOrStdout(), name, cfg)
				return nil
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("--cpuprofile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			return run(cmd.Context(), cfg, path, name, readyFile, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (default: the embedded configs/default.yaml)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the EAL arguments and the port plan, then exit")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file")
	cmd.Flags().StringVar(&readyFile, "ready-file", "", "write this file when dpfw forwards (every port started, every worker polling); removed on exit")
	return cmd
}

func printPlan(w io.Writer, name string, cfg *config.Config) {
	plan := daemon.PlanEAL(cfg)
	fmt.Fprintf(w, "config: %s\nEAL: %s\n  (%s)\n", name, strings.Join(plan.Args, " "), plan.Why)
	for _, p := range cfg.Ports {
		fmt.Fprintf(w, "port %-10s %s  rx/tx queues %d, rx_desc %d, tx_desc %d\n", p.Name, p.Device, len(cfg.Workers.CPUs), p.RxDesc, p.TxDesc)
	}
	for _, l := range cfg.Links {
		fmt.Fprintf(w, "link %-10s %s <-> %s (inside: %s)\n", l.Name, l.Ports[0], l.Ports[1], l.Inside)
	}
	for i, c := range cfg.Workers.CPUs {
		fmt.Fprintf(w, "worker %d on cpu %d: rx queue %d of every port\n", i, c, i)
	}
}

func run(ctx context.Context, cfg *config.Config, path, name, readyFile string, stdout, stderr io.Writer) error {
	log := newLogger(cfg, stderr)
	if os.Geteuid() != 0 {
		log.Warn("not running as root: DPDK usually needs root (or CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_IPC_LOCK) for hugepages and taps")
	}
	log.Info("config loaded", "file", name)
	d, err := daemon.Start(cfg, path, log)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)
	stopWatch := make(chan struct{})
	defer close(stopWatch)
	if err := d.Watch(stopWatch); err != nil {
		log.Warn("not watching the config file", "err", err)
	}

	var srv *http.Server
	if cfg.Metrics.Listen != "" {
		srv, err = serveMetrics(cfg, d, log)
		if err != nil {
			_ = d.Stop()
			return err
		}
	}
	if !waitSynced(ctx, d, sigs, log) {
		_ = d.Stop()
		return nil
	}
	if err := announceReady(cfg, d, readyFile, log); err != nil {
		_ = d.Stop()
		return err
	}
	if readyFile != "" {
		defer os.Remove(readyFile)
	}
	if ctx == nil {
		ctx = context.Background()
	}
	waitForStop(ctx, cfg, d, log, sigs, hups)
	_ = sdNotify("STOPPING=1")
	if readyFile != "" {
		os.Remove(readyFile)
	}
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
	}
	stopErr := d.Stop()
	printFinal(stdout, d)
	return stopErr
}

// announceReady tells systemd and the ready file that dpfw forwards: every
// port started and every worker polling (daemon.Start returns then), the
// metrics and API listening.
// waitSynced waits for the sync's start-up resync (at once without
// sync), or false on a stop signal or ctx's end first.
func waitSynced(ctx context.Context, d *daemon.Daemon, sigs <-chan os.Signal, log *slog.Logger) bool {
	select {
	case <-d.SyncReady():
		return true
	default:
	}
	wait := d.Config.Sync.ReadyTimeout
	log.Info("waiting for the peer's connections (sync.ready_timeout bounds the wait)", "ready_timeout", wait)
	// systemd's start timeout must not run out first.
	if err := sdNotify(fmt.Sprintf("STATUS=waiting for the peer's connections\nEXTEND_TIMEOUT_USEC=%d", (wait + 10*time.Second).Microseconds())); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	select {
	case <-d.SyncReady():
		return true
	case <-sigs:
	case <-done:
	}
	return false
}

func announceReady(cfg *config.Config, d *daemon.Daemon, readyFile string, log *slog.Logger) error {
	status := fmt.Sprintf("forwarding: %d ports, %d links, %d workers", len(cfg.Ports), len(cfg.Links), len(cfg.Workers.CPUs))
	if readyFile != "" {
		if err := writeReadyFile(readyFile, status+"\n"); err != nil {
			return err
		}
	}
	if err := sdNotify("READY=1\nSTATUS=" + status); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	log.Info("ready", "status", status)
	return nil
}

// waitForStop serves signals, the systemd watchdog and the stats log line
// until a stop signal, ctx's end, or every worker stopping.
func waitForStop(ctx context.Context, cfg *config.Config, d *daemon.Daemon, log *slog.Logger, sigs, hups <-chan os.Signal) {
	var watchdog <-chan time.Time
	if every := watchdogEvery(); every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		watchdog = t.C
	}
	var tick <-chan time.Time
	if cfg.Metrics.StatsInterval > 0 {
		t := time.NewTicker(cfg.Metrics.StatsInterval)
		defer t.Stop()
		tick = t.C
	}
loop:
	for {
		select {
		case s := <-sigs:
			log.Info("stopping", "signal", s.String())
			break loop
		case <-hups:
			// Reloads run in the daemon's own goroutine: a slow or stuck
			// one never delays SIGINT/SIGTERM.
			d.RequestReload("SIGHUP")
		case <-ctx.Done():
			break loop
		case <-d.Done():
			log.Error("every worker stopped", "err", d.Err())
			break loop
		case <-watchdog:
			if d.Healthy() {
				_ = sdNotify("WATCHDOG=1")
			}
		case <-tick:
			t := d.Total()
			log.Info("stats", "rx", t.RxPackets, "tx", t.TxPackets, "dropped", t.TotalDrops(), "mbufs_in_use", d.MbufsInUse())
		}
	}
}

func serveMetrics(cfg *config.Config, d *daemon.Daemon, log *slog.Logger) (*http.Server, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(daemon.Collectors()...)
	reg.MustRegister(d.FlowExportCollectors()...)
	reg.MustRegister(d.SyncCollectors()...)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "dpfw", Name: "build_info", Help: "dpfw's version (label) and DPDK version.",
		ConstLabels: prometheus.Labels{"version": version, "dpdk": dpdkVersion()},
	}, func() float64 { return 1 }))
	reg.MustRegister(metrics.NewCollector(metrics.Source{
		Workers:    d.Snapshots,
		Ports:      func() []metrics.PortStats { return portStats(d) },
		MbufsInUse: func() uint64 { return uint64(d.MbufsInUse()) },
		MbufsTotal: uint64(cfg.Mempool.Mbufs),
		Conntrack:  d.CTCounters,
		Rules:      d.RuleStats,

		MaxRuleSeries: cfg.Metrics.RuleSeries,
	}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorHandling: promhttp.ContinueOnError, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	api := d.Handler()
	mux.Handle("/api/", api)
	// The probes for orchestrators and load balancers, also at the top.
	for _, probe := range []string{"/readyz", "/healthz"} {
		mux.HandleFunc(probe, func(w http.ResponseWriter, r *http.Request) {
			r.URL.Path = "/api" + probe
			api.ServeHTTP(w, r)
		})
	}
	ln, err := net.Listen("tcp", cfg.Metrics.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %s: %w; pick a free address or set metrics.listen: \"\"", cfg.Metrics.Listen, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("metrics listening", "url", "http://"+ln.Addr().String()+"/metrics")
	return srv, nil
}

func portStats(d *daemon.Daemon) []metrics.PortStats {
	out := make([]metrics.PortStats, 0, len(d.Ports))
	for _, p := range d.Ports {
		st, err := p.ID.Stats()
		if err != nil {
			continue
		}
		link, _ := p.ID.Link()
		out = append(out, metrics.PortStats{
			Name: p.Config.Name, RxPackets: st.IPackets, TxPackets: st.OPackets,
			RxBytes: st.IBytes, TxBytes: st.OBytes, RxMissed: st.IMissed,
			RxErrors: st.IErrors, TxErrors: st.OErrors, RxNoMbuf: st.RxNoMbuf, LinkUp: link.Up,
			LinkUnknown: tapElsewhere(p.Config.Device),
		})
	}
	return out
}

func printFinal(w io.Writer, d *daemon.Daemon) {
	fmt.Fprintln(w, "final counters:")
	for i, s := range d.Snapshots() {
		printSnapshot(w, fmt.Sprintf("worker %d", i), &s)
	}
}

func printSnapshot(w io.Writer, name string, s *dataplane.Snapshot) {
	fmt.Fprintf(w, "  %s: rx %d pkts %d bytes, tx %d pkts %d bytes, bursts %d, empty polls %d\n",
		name, s.RxPackets, s.RxBytes, s.TxPackets, s.TxBytes, s.Bursts, s.EmptyPolls)
	for r := filter.DropReason(1); r < filter.NumDropReasons; r++ {
		if s.Drops[r] != 0 {
			fmt.Fprintf(w, "    dropped %-20s %d\n", r.String(), s.Drops[r])
		}
	}
}

// tapElsewhere reports whether device is a net_tap whose kernel interface
// is not in dpfw's network namespace (moved out: DPDK's net_tap looks for
// it there by name, so it reads its link as down).
func tapElsewhere(device string) bool {
	name, args, _ := strings.Cut(device, ",")
	if !strings.HasPrefix(name, "net_tap") {
		return false
	}
	for _, kv := range strings.Split(args, ",") {
		if iface, ok := strings.CutPrefix(kv, "iface="); ok {
			_, err := net.InterfaceByName(iface)
			return err != nil
		}
	}
	return false
}
