package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "reloads_total",
		Help: "Configuration reloads, by result (success, failure; timeout counts the failures that were abandoned at rules.reload_timeout).",
	}, []string{"result"})
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "info",
		Help: "The active configuration: 1 for its hash (sha256 of the parsed config and rules) and rule-set generation.",
	}, []string{"hash", "generation"})
	lastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "last_reload_successful",
		Help: "1 if the last reload attempt succeeded (or none was made since start), 0 if it failed.",
	})
	lastReloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
		Help: "When the running rule set was loaded (start or last successful reload), in Unix seconds.",
	})
)

// Collectors returns the daemon's own Prometheus collectors.
func Collectors() []prometheus.Collector {
	// Export both results from the start, so dashboards and alerts see 0
	// rather than no series.
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	reloads.WithLabelValues("timeout")
	return []prometheus.Collector{reloads, configInfo, lastReloadOK, lastReloadTime}
}

// configHash hashes the parsed configuration and the rule text it was
// compiled from (not the raw bytes: comments and formatting of the config
// do not change it). The text is the one read when the config was loaded,
// so the hash describes exactly what was compiled.
func configHash(cfg *config.Config) string {
	_, text := cfg.RulesText()
	_, text6 := cfg.RulesText6()
	b, _ := json.Marshal(struct {
		C     *config.Config
		R, R6 string
	}{cfg, text, text6})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	Generation uint32   `json:"generation"`
	Rules      int      `json:"rules"`
	Hash       string   `json:"hash"`
	Restart    []string `json:"needs_restart,omitempty"` // changed settings that apply only after a restart
	// Rebuilt says what the reload did to the rules: "compiled" (a new
	// rule set), "sets" (only sets' contents changed: the compiled rules
	// were kept, and their counters), or "unchanged".
	Rebuilt string `json:"rebuilt"`
}

// reloadAnswer is one reload's outcome, for every request it served.
type reloadAnswer struct {
	res ReloadResult
	err error
}

// reloader runs reloads one at a time in its own goroutine, off the signal
// path: a request made while a reload runs waits for the next one, and
// every request waiting then is served by that one reload (coalesced).
type reloader struct {
	mu      sync.Mutex
	waiting []chan reloadAnswer // +checklocks:mu
	reasons []string            // +checklocks:mu
	kick    chan struct{}       // has a token when requests wait
	// stuck is set while an abandoned reload is still running (blocked in
	// a read, or compiling past its deadline): no other starts until it
	// returns, so abandoned reloads cannot pile up.
	stuck atomic.Bool
	// swapMu orders a reload's swap against its abandonment: a reload
	// swaps only if its context is still live under swapMu.
	swapMu sync.Mutex
}

// RequestReload asks for a reload and returns at once; the result is
// logged and counted. SIGHUP and the file watcher use it.
func (d *Daemon) RequestReload(reason string) { d.enqueue(reason, nil) }

// Reload asks for a reload and waits for its outcome (or ctx): parse,
// validate and compile off the packet path, then swap the rule set
// atomically (workers pick it up at their next burst). Tracked connections
// survive; their cached decisions are invalidated by the new generation.
// On any error nothing changes.
func (d *Daemon) Reload(ctx context.Context) (ReloadResult, error) {
	ch := make(chan reloadAnswer, 1)
	d.enqueue("api", ch)
	select {
	case a := <-ch:
		return a.res, a.err
	case <-ctx.Done():
		return ReloadResult{}, fmt.Errorf("waiting for the reload: %w", ctx.Err())
	}
}

func (d *Daemon) enqueue(reason string, ch chan reloadAnswer) {
	r := &d.reloads
	r.mu.Lock()
	if ch != nil {
		r.waiting = append(r.waiting, ch)
	}
	r.reasons = append(r.reasons, reason)
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// runReloads serves reload requests until quit is closed.
func (d *Daemon) runReloads(quit <-chan struct{}) {
	r := &d.reloads
	for {
		select {
		case <-quit:
			return
		case <-r.kick:
		}
		r.mu.Lock()
		waiting, reasons := r.waiting, r.reasons
		r.waiting, r.reasons = nil, nil
		r.mu.Unlock()
		a := d.reloadOnce(reasons)
		for _, ch := range waiting {
			ch <- a
		}
	}
}

// reloadOnce runs one reload with the configured deadline, logs and counts
// its outcome.
func (d *Daemon) reloadOnce(reasons []string) reloadAnswer {
	r := &d.reloads
	timeout := d.active.Load().Rules.ReloadTimeout
	if r.stuck.Load() {
		err := fmt.Errorf("a reload abandoned after its deadline (rules.reload_timeout %s) is still running; not starting another until it returns (is rules.file on a hung filesystem?)", timeout)
		reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload refused; keeping the running configuration", "err", err, "requests", len(reasons))
		return reloadAnswer{err: err}
	}
	start := time.Now()
	d.log.Info("reloading", "reasons", reasons)
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout,
		fmt.Errorf("the reload took longer than rules.reload_timeout (%s)", timeout))
	defer cancel()
	ch := make(chan reloadAnswer, 1)
	go func() {
		res, err := d.reload(ctx)
		ch <- reloadAnswer{res, err}
	}()
	var a reloadAnswer
	select {
	case a = <-ch:
	case <-ctx.Done():
		r.swapMu.Lock() // the reload can no longer swap once this returns
		cancel()
		r.swapMu.Unlock()
		r.stuck.Store(true)
		go func() {
			<-ch
			r.stuck.Store(false)
			debug.FreeOSMemory()
			d.log.Info("the abandoned reload has returned", "after", time.Since(start).Round(time.Millisecond))
		}()
		a.err = fmt.Errorf("abandoned: %w", context.Cause(ctx))
		reloads.WithLabelValues("timeout").Inc()
	}
	took := time.Since(start).Round(time.Millisecond)
	if a.err != nil {
		reloads.WithLabelValues("failure").Inc()
		lastReloadOK.Set(0)
		d.log.Error("reload failed; keeping the running configuration", "err", a.err, "took", took, "requests", len(reasons), "reasons", reasons)
		// A refused compile may have grown the heap a lot (a huge rule
		// set): give that memory back now, not at some later GC.
		debug.FreeOSMemory()
		return a
	}
	reloads.WithLabelValues("success").Inc()
	lastReloadOK.Set(1)
	lastReloadTime.SetToCurrentTime()
	d.log.Info("reloaded", "generation", a.res.Generation, "rules", a.res.Rules, "hash", a.res.Hash,
		"needs_restart", a.res.Restart, "took", took, "requests", len(reasons), "reasons", reasons)
	go func() {
		// Workers drop the old rule set at their next burst.
		time.Sleep(time.Second)
		debug.FreeOSMemory()
	}()
	return a
}

func (d *Daemon) reload(ctx context.Context) (ReloadResult, error) {
	if d.ConfigPath == "" {
		return ReloadResult{}, fmt.Errorf("running on the embedded default config: there is no file to reload (start with --config FILE)")
	}
	cfg, err := config.LoadFile(d.ConfigPath)
	if err != nil {
		return ReloadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return ReloadResult{}, context.Cause(ctx)
	}
	old := d.Rules.Load()
	portIDs := map[string]uint16{}
	for _, p := range d.Ports {
		portIDs[p.Config.Name] = uint16(p.ID)
	}
	f, rebuilt, err := d.newRules(ctx, cfg, old, portIDs)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("rules: %w", err)
	}
	res := ReloadResult{Generation: f.Gen, Rules: f.Stats.Rules, Hash: configHash(cfg), Rebuilt: rebuilt}
	cur := d.Config
	for _, ch := range []struct {
		key  string
		a, b any
	}{
		{"eal", cur.EAL, cfg.EAL}, {"mempool", cur.Mempool, cfg.Mempool}, {"ports", cur.Ports, cfg.Ports},
		{"links", cur.Links, cfg.Links}, {"workers", cur.Workers, cfg.Workers},
		{"dataplane", cur.Dataplane, cfg.Dataplane}, {"conntrack", cur.Conntrack, cfg.Conntrack},
		{"metrics", cur.Metrics, cfg.Metrics}, {"log", cur.Log, cfg.Log}, {"flow_export", cur.FlowExport, cfg.FlowExport},
		{"sync", cur.Sync, cfg.Sync},
	} {
		if !reflect.DeepEqual(ch.a, ch.b) {
			res.Restart = append(res.Restart, ch.key)
		}
	}
	r := &d.reloads
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	if ctx.Err() != nil {
		return ReloadResult{}, context.Cause(ctx)
	}
	d.Rules.Store(f)
	d.active.Store(cfg)
	configInfo.Reset()
	configInfo.WithLabelValues(res.Hash, fmt.Sprint(f.Gen)).Set(1)
	return res, nil
}

// Watch reloads when the config file, the rules file or a set's file is
// replaced. It
// watches their directories, so a file renamed into place (the safe way
// to deploy: write a temporary, rename it over) and symlinked configs are
// followed. With rules.watch: rename (the default) writes into the file
// itself are not reloaded: a file being written is incomplete, and no
// version of it should go live before the writer is done; they are logged
// once per quiet period, saying how to apply them. With rules.watch: write,
// they are reloaded after a second without a further write;
// an iptables-save file without its COMMIT is refused then, keeping the
// running rules. Watch returns at once; the watcher stops when stop is
// closed.
func (d *Daemon) Watch(stop <-chan struct{}) error {
	cfg := d.active.Load()
	if d.ConfigPath == "" || cfg.Rules.Watch == "off" {
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	files := map[string]bool{}
	add := func(p string) {
		if p == "" {
			return
		}
		abs, _ := filepath.Abs(p)
		files[abs] = true
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			files[real] = true
			_ = w.Add(filepath.Dir(real))
		}
		_ = w.Add(filepath.Dir(abs))
	}
	add(d.ConfigPath)
	add(cfg.RulesPath())
	add(cfg.RulesPath6())
	for i := range cfg.Rules.Sets {
		add(cfg.SetPath(i))
	}
	go d.watch(w, files, cfg.Rules.Watch == "write", stop)
	return nil
}

// Quiet periods of the watcher: a replaced file is reloaded after
// replaceSettle (editors rename, then chmod), written files after
// writeSettle without a further write.
const (
	replaceSettle = 100 * time.Millisecond
	writeSettle   = time.Second
)

func (d *Daemon) watch(w *fsnotify.Watcher, files map[string]bool, reloadWrites bool, stop <-chan struct{}) {
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	replaced, written := false, ""
	for {
		select {
		case <-stop:
			timer.Stop()
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			abs, _ := filepath.Abs(ev.Name)
			if !files[abs] {
				continue
			}
			switch {
			case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename):
				replaced = true
				timer.Reset(replaceSettle)
			case ev.Has(fsnotify.Write):
				written = abs
				if !replaced {
					timer.Reset(writeSettle)
				}
			}
		case <-timer.C:
			switch {
			case replaced:
				d.RequestReload("file replaced")
			case written != "" && reloadWrites:
				d.RequestReload("file written")
			case written != "":
				d.log.Warn("a watched file was written in place: not reloaded (rules.watch: rename), since a file being written may be incomplete; apply it with dpfw reload or SIGHUP, or deploy by renaming a complete file into place",
					"file", written)
			}
			replaced, written = false, ""
		case err := <-w.Errors:
			d.log.Warn("config watcher", "err", err)
		}
	}
}

// sameRules reports whether two rule sets compile to the same classifier:
// the same text and the same address sets (which the text only names).
// newRules makes the rule set of cfg, replacing old: when only sets'
// contents changed (the same rules text, the same set names), the compiled
// rules are kept with new sets and old's counters (filter.WithSets: no
// compile, as ipset changes a set under iptables' rules); otherwise the
// rules are compiled, and if they turn out the same as old's, old stays.
func (d *Daemon) newRules(ctx context.Context, cfg *config.Config, old *filter.Active, portIDs map[string]uint16) (*filter.Active, string, error) {
	if cur := d.active.Load(); cur != nil && cur.SameRuleText(cfg) {
		setMap, err := ruleset.Sets(cfg)
		if err != nil {
			return nil, "", err
		}
		if reflect.DeepEqual(setMap, old.Ruleset.Sets) {
			return old, "unchanged", nil
		}
		if nf, err := old.WithSets(setMap, old.Gen+1); err == nil {
			return &filter.Active{Filter: nf, State: old.State}, "sets", nil
		}
		// A set changed family: the rules must be parsed again.
	}
	c, err := ruleset.CompileContext(ctx, cfg, portIDs, old.Gen+1)
	if err != nil {
		return nil, "", err
	}
	if sameRules(c.Ruleset, old.Ruleset) {
		// The same rules (a file rewritten with what runs, e.g. by a
		// persisted live edit): keep the running set and its counters.
		return old, "unchanged", nil
	}
	return filter.Install(c, old.State.Workers(), old), "compiled", nil
}

func sameRules(a, b *rules.Ruleset) bool {
	return a.Save() == b.Save() && reflect.DeepEqual(a.Sets, b.Sets)
}
