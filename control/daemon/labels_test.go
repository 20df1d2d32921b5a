package daemon

import (
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/metrics"
	"github.com/dpfw/dpfw/dataplane/filter"
	"github.com/dpfw/dpfw/dataplane/rules"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzRuleLabels: whatever rule text the parser accepts, /metrics still
// renders (rule comments and chain names become label values, and one bad
// value used to fail the whole scrape).
func FuzzRuleLabels(f *testing.F) {
	f.Add("-A INPUT -m comment --comment \"say \\\"hi\\\" now\" -j ACCEPT")
	f.Add("-N c\x7f\n-A INPUT -j c\x7f\n-A c\x7f -m comment --comment '\t{}=\"\\' -j DROP")
	f.Add("-A INPUT -m comment --comment \"caf\xe9\" -j ACCEPT")
	f.Add("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp -m comment --comment \"\u2603 snow\" -j ACCEPT\nCOMMIT\n")
	f.Fuzz(func(t *testing.T, text string) {
		rs, err := rules.ParseIptables("fuzz", text)
		if err != nil {
			return
		}
		fl, err := filter.Compile(rs, filter.Env{Ports: map[string]uint16{"a": 0, "b": 1}}, 1)
		if err != nil {
			return
		}
		d := &Daemon{}
		d.Rules.Store(filter.Install(fl, 1, nil))
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(metrics.NewCollector(metrics.Source{Rules: d.RuleStats}))
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("a rule set the parser accepted breaks /metrics: %v", err)
		}
	})
}

// TestRuleLabelsInvalidUTF8: invalid UTF-8 never reaches a label from rule
// text (the parser refuses it), and a label value that is not UTF-8 anyway
// is rendered with replacement characters instead of failing the scrape.
func TestRuleLabelsInvalidUTF8(t *testing.T) {
	if _, err := rules.ParseIptables("f", "-A INPUT -m comment --comment \"caf\xe9\" -j ACCEPT"); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("a comment with invalid UTF-8: %v; want it refused", err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(metrics.Source{Rules: func() []metrics.RuleStat {
		return []metrics.RuleStat{{Chain: "INPUT", Rule: "1", Target: "ACCEPT", Comment: "caf\xe9"}}
	}}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "comment" && l.GetValue() == "caf\uFFFD" {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("the rule's series is missing or its comment was not repaired")
	}
}
