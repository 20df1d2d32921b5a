package metrics_test

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

var update = flag.Bool("update", false, "rewrite testdata/families.txt")

// TestFamiliesGolden pins every exported series' name, type, help and
// labels (testdata/families.txt): a renamed or dropped metric breaks
// dashboards and alerts, so it must be a deliberate change (-update).
func TestFamiliesGolden(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(source()))
	var lines []string
	for _, mf := range mustGather(t, reg) {
		for _, m := range mf.Metric {
			var ls []string
			for _, l := range m.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			lines = append(lines, fmt.Sprintf("%s %s %q {%s}", mf.GetName(), mf.GetType(), mf.GetHelp(), strings.Join(ls, ",")))
		}
	}
	sort.Strings(lines)
	got := strings.Join(lines, "\n") + "\n"
	const golden = "testdata/families.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("exported metrics differ from %s (run with -update if deliberate):\n%s", golden, got)
	}
}
