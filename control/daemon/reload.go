package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"time"

	"github.com/dpfw/dpfw/control/config"
	"github.com/dpfw/dpfw/control/ruleset"
	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "reloads_total",
		Help: "Configuration reloads, by result (success, failure).",
	}, []string{"result"})
	configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "dpfw", Subsystem: "config", Name: "info",
		Help: "The active configuration: 1 for its hash (sha256 of the parsed config and rules) and rule-set generation.",
	}, []string{"hash", "generation"})
)

// Collectors returns the daemon's own Prometheus collectors.
func Collectors() []prometheus.Collector {
	// Export both results from the start, so dashboards and alerts see 0
	// rather than no series.
	reloads.WithLabelValues("success")
	reloads.WithLabelValues("failure")
	return []prometheus.Collector{reloads, configInfo}
}

// configHash hashes the parsed configuration and rule text (not the raw
// bytes: comments and formatting do not change it).
func configHash(cfg *config.Config) string {
	_, text, _ := cfg.RulesText()
	b, _ := json.Marshal(struct {
		C *config.Config
		R string
	}{cfg, text})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	Generation uint32   `json:"generation"`
	Rules      int      `json:"rules"`
	Hash       string   `json:"hash"`
	Restart    []string `json:"needs_restart,omitempty"` // changed settings that apply only after a restart
}

// Reload loads the config file again: parse, validate and compile off the
// packet path, then swap the rule set atomically (workers pick it up at
// their next burst). Tracked connections survive; their cached decisions
// are invalidated by the new generation. On any error nothing changes.
func (d *Daemon) Reload() (ReloadResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	res, err := d.reload()
	if err != nil {
		reloads.WithLabelValues("failure").Inc()
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		return res, err
	}
	reloads.WithLabelValues("success").Inc()
	d.log.Info("reloaded", "generation", res.Generation, "rules", res.Rules, "hash", res.Hash, "needs_restart", res.Restart)
	return res, nil
}

func (d *Daemon) reload() (ReloadResult, error) {
	if d.ConfigPath == "" {
		return ReloadResult{}, fmt.Errorf("running on the embedded default config: there is no file to reload (start with --config FILE)")
	}
	cfg, err := config.LoadFile(d.ConfigPath)
	if err != nil {
		return ReloadResult{}, err
	}
	old := d.Rules.Load()
	portIDs := map[string]uint16{}
	for _, p := range d.Ports {
		portIDs[p.Config.Name] = uint16(p.ID)
	}
	f, err := ruleset.Compile(cfg, portIDs, old.Gen+1, old)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("rules: %w", err)
	}
	res := ReloadResult{Generation: f.Gen, Rules: f.Stats.Rules, Hash: configHash(cfg)}
	cur := d.Config
	for _, ch := range []struct {
		key  string
		a, b any
	}{
		{"eal", cur.EAL, cfg.EAL}, {"mempool", cur.Mempool, cfg.Mempool}, {"ports", cur.Ports, cfg.Ports},
		{"links", cur.Links, cfg.Links}, {"workers", cur.Workers, cfg.Workers},
		{"dataplane", cur.Dataplane, cfg.Dataplane}, {"conntrack", cur.Conntrack, cfg.Conntrack},
		{"metrics", cur.Metrics, cfg.Metrics}, {"log", cur.Log, cfg.Log},
	} {
		if !reflect.DeepEqual(ch.a, ch.b) {
			res.Restart = append(res.Restart, ch.key)
		}
	}
	d.Rules.Store(f)
	cfgCopy := *cur
	cfgCopy.Rules = cfg.Rules
	d.Config = &cfgCopy
	configInfo.Reset()
	configInfo.WithLabelValues(res.Hash, fmt.Sprint(f.Gen)).Set(1)
	return res, nil
}

// Watch reloads when the config file or the rules file changes. It watches
// their directories, so editors that replace the file (write a temporary,
// rename it over) and symlinked configs are followed, and waits for 300 ms
// of quiet before reloading. It returns when stop is closed.
func (d *Daemon) Watch(stop <-chan struct{}) error {
	if d.ConfigPath == "" {
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
	if d.Config.Rules.File != "" {
		p := d.Config.Rules.File
		if !filepath.IsAbs(p) {
			p = filepath.Join(d.Config.Dir, p)
		}
		add(p)
	}
	go func() {
		defer w.Close()
		var timer *time.Timer
		fire := make(chan struct{}, 1)
		for {
			select {
			case <-stop:
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				abs, _ := filepath.Abs(ev.Name)
				if !files[abs] {
					continue
				}
				if timer != nil {
					timer.Stop()
				}
				timer = time.AfterFunc(300*time.Millisecond, func() {
					select {
					case fire <- struct{}{}:
					default:
					}
				})
			case <-fire:
				_, _ = d.Reload()
			case err := <-w.Errors:
				d.log.Warn("config watcher", "err", err)
			}
		}
	}()
	return nil
}
