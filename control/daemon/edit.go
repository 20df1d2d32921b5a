package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
)

// Live rule edits (dpfw rules insert|append|delete|replace|check, as
// iptables -I/-A/-D/-R/-C): an edit of the running rule set, compiled and
// swapped as a reload is (the counters of the rules it leaves alone carry
// over), and written back to rules.file only when asked. A reload from the
// file replaces live edits that were not written, as iptables-restore
// replaces the table.

// EditRequest is one live edit (POST /api/rules/edit).
type EditRequest struct {
	// Op is insert, append, delete, replace or check.
	Op    string `json:"op"`
	Chain string `json:"chain"`
	// Num is the rule number (1-based; 0: none).
	Num int `json:"num,omitempty"`
	// Rule is the rule after the chain, as iptables takes it.
	Rule string `json:"rule,omitempty"`
	// IPv6 edits the ip6tables rule set (rules.file6/iptables6).
	IPv6 bool `json:"ipv6,omitempty"`
	// Persist writes the edited rule set to its rules file.
	Persist bool `json:"persist,omitempty"`
}

// EditResult is an edit's outcome.
type EditResult struct {
	Generation uint32 `json:"generation"`
	Rules      int    `json:"rules"`
	// Persisted is the file written (Persist).
	Persisted string `json:"persisted,omitempty"`
}

var editOps = map[string]rules.EditOp{"insert": rules.Insert, "append": rules.Append, "delete": rules.Delete,
	"replace": rules.Replace, "check": rules.Check}

// editFamily picks the rule set an edit applies to: the running one, or
// with two families (rules.file6/iptables6) the IPv4 or IPv6 one.
func editFamily(rs *rules.Ruleset, v6 bool) (target *rules.Ruleset, merge func(*rules.Ruleset) *rules.Ruleset, err error) {
	v4s, v6s := rs.Families()
	switch {
	case v4s == nil && v6:
		return nil, nil, errors.New("-6: the rule set serves both families (no rules.file6 or rules.iptables6): edit it without -6")
	case v4s == nil:
		return rs, func(n *rules.Ruleset) *rules.Ruleset { return n }, nil
	case v6:
		return v6s, func(n *rules.Ruleset) *rules.Ruleset { return rules.MergeFamilies(v4s, n) }, nil
	}
	return v4s, func(n *rules.Ruleset) *rules.Ruleset { return rules.MergeFamilies(n, v6s) }, nil
}

// EditRules applies a live edit. A check answers rules.ErrNoMatch when no
// rule equals the one given.
func (d *Daemon) EditRules(ctx context.Context, req EditRequest) (EditResult, error) {
	op, ok := editOps[req.Op]
	if !ok {
		return EditResult{}, fmt.Errorf("op %q: want insert, append, delete, replace or check", req.Op)
	}
	r := &d.reloads
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	old := d.Rules.Load()
	target, merge, err := editFamily(old.Ruleset, req.IPv6)
	if err != nil {
		return EditResult{}, err
	}
	edited, err := rules.ApplyEdit(target, rules.Edit{Op: op, Chain: req.Chain, Num: req.Num, Spec: req.Rule})
	if err != nil || op == rules.Check {
		return EditResult{Generation: old.Gen, Rules: len(old.Rules)}, err
	}
	path, err := d.persistPath(req)
	if err != nil {
		return EditResult{}, err
	}
	c, err := filter.Compile(merge(edited), filter.Env{Ports: d.portIDs(), Context: ctx}, old.Gen+1)
	if err != nil {
		return EditResult{}, err
	}
	f := filter.Install(c, old.State.Workers(), old)
	f.KeepCounters(old)
	if path != "" {
		if err := writeAtomic(path, edited.Save()); err != nil {
			return EditResult{}, fmt.Errorf("--persist: %w; the running rules are unchanged", err)
		}
	}
	d.Rules.Store(f)
	configInfo.Reset()
	configInfo.WithLabelValues(configHash(d.active.Load()), fmt.Sprint(f.Gen)).Set(1)
	d.log.Info("rules edited", "op", op.String(), "chain", req.Chain, "num", req.Num, "rule", req.Rule, "generation", f.Gen, "persisted", path)
	return EditResult{Generation: f.Gen, Rules: f.Stats.Rules, Persisted: path}, nil
}

// persistPath is the file a persisted edit writes ("" when not asked).
func (d *Daemon) persistPath(req EditRequest) (string, error) {
	if !req.Persist {
		return "", nil
	}
	cfg := d.active.Load()
	path, key := cfg.RulesPath(), "rules.file"
	if req.IPv6 {
		path, key = cfg.RulesPath6(), "rules.file6"
	}
	if path == "" {
		return "", fmt.Errorf("--persist: the rules are not in a file (%s is not set: they are inline or structured in the config); edit the config instead, or keep the rules in %s", key, key)
	}
	return path, nil
}

// writeAtomic replaces path with text: a temporary file beside it, renamed
// over it (the file watcher then sees the same rules and keeps them).
func writeAtomic(path, text string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(text); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if st, err := os.Stat(path); err == nil {
		_ = os.Chmod(tmp.Name(), st.Mode().Perm())
	}
	return os.Rename(tmp.Name(), path)
}

// apiRulesEdit applies a live edit (POST /api/rules/edit, an EditRequest
// as JSON). A check that finds no rule answers 404.
func (d *Daemon) apiRulesEdit(w http.ResponseWriter, r *http.Request) {
	var req EditRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		failJSON(w, http.StatusBadRequest, fmt.Errorf("edit request: %w", err))
		return
	}
	req.Chain, req.Rule = strings.TrimSpace(req.Chain), strings.TrimSpace(req.Rule)
	res, err := d.EditRules(r.Context(), req)
	switch {
	case errors.Is(err, rules.ErrNoMatch):
		failJSON(w, http.StatusNotFound, err)
	case err != nil:
		failJSON(w, http.StatusBadRequest, err)
	default:
		writeJSON(w, 200, res)
	}
}
