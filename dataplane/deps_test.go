package dataplane_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestDeps enforces the import graph: the packet path never depends on the
// control plane, viper or Prometheus, never imports reflect or testing itself
// (the standard library may, e.g. encoding/binary), and only dataplane/worker
// (the lcore loop) may reach the cgo layer.
func TestDeps(t *testing.T) {
	forbidden := []string{"github.com/dpfw/dpfw/control", "github.com/spf13/viper", "github.com/prometheus/"}
	forbiddenDirect := []string{"reflect", "testing"}
	for _, pkg := range []struct {
		path  string
		noCgo bool
	}{
		{"github.com/dpfw/dpfw/dataplane", true},
		{"github.com/dpfw/dpfw/packet", true},
		{"github.com/dpfw/dpfw/packet/header", true},
		{"github.com/dpfw/dpfw/dataplane/filter", true},
		{"github.com/dpfw/dpfw/dataplane/rules", true},
		{"github.com/dpfw/dpfw/dataplane/worker", false},
	} {
		direct, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, pkg.path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg.path, err)
		}
		for _, imp := range strings.Fields(string(direct)) {
			for _, f := range forbiddenDirect {
				if imp == f {
					t.Errorf("%s imports %s", pkg.path, imp)
				}
			}
		}
		out, err := exec.Command("go", "list", "-deps", pkg.path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg.path, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
					t.Errorf("%s depends on %s", pkg.path, dep)
				}
			}
			if pkg.noCgo && (dep == "runtime/cgo" || strings.HasPrefix(dep, "github.com/dpfw/dpfw/cgo")) {
				t.Errorf("%s must build without cgo but depends on %s", pkg.path, dep)
			}
		}
	}
}

// importRules lists, for every package of the module, the project packages it
// may import (its own tests aside). The layers, bottom up: packet views
// (packet/header, packet), connection tracking (conntrack/tcpstate,
// conntrack/ftp, conntrack), rules (dataplane/rules: the rule language;
// dataplane/reject; dataplane/filter: the compiled classifier),
// the packet path (dataplane, then dataplane/worker and the cgo layer),
// the control plane (control/...), the end-to-end harness (internal/e2e),
// and the programs (cmd/dpfw, perf). A
// package may import only from the layers below it, so the layering
// cannot decay: a new package, or a new import, must be added here.
var importRules = map[string][]string{
	"internal/nocopy":    {},
	"internal/rate":      {},
	"internal/ring":      {"internal/nocopy"},
	"packet/header":      {},
	"packet":             {"packet/header"},
	"conntrack/ftp":      {},
	"conntrack/tcpstate": {"packet/header"},
	"conntrack":          {"conntrack/ftp", "conntrack/tcpstate", "internal/nocopy", "internal/rate", "internal/ring", "packet", "packet/header"},
	"dataplane/reject":   {"packet", "packet/header"},
	"dataplane/rules":    {},
	"dataplane/filter":   {"dataplane/reject", "dataplane/rules", "internal/rate", "packet"},
	"dataplane":          {"conntrack", "conntrack/tcpstate", "dataplane/filter", "dataplane/reject", "internal/nocopy", "internal/rate", "internal/ring", "packet", "packet/header"},
	"cgo/dpdk":           {},
	"dataplane/worker":   {"cgo/dpdk", "dataplane", "dataplane/filter", "dataplane/reject", "internal/nocopy", "packet"},
	"configs":            {},
	"control/config":     {},
	"control/metrics":    {"conntrack", "conntrack/tcpstate", "dataplane", "dataplane/filter"},
	"control/ruleset":    {"conntrack", "conntrack/tcpstate", "control/config", "control/hasync", "dataplane", "dataplane/filter", "dataplane/rules"},
	"control/daemon": {"cgo/dpdk", "conntrack", "conntrack/tcpstate", "control/config", "control/metrics", "control/ruleset",
		"control/flowexport", "control/hasync", "control/hasync/wire", "dataplane", "dataplane/filter", "dataplane/rules", "dataplane/worker", "internal/ring", "packet", "packet/header"},
	"control/hasync/wire": {},
	"control/hasync":      {"conntrack", "conntrack/tcpstate", "control/hasync/wire", "packet/header"},
	"control/flowexport":  {"conntrack", "conntrack/tcpstate", "packet/header"},
	"control/replay":      {"conntrack", "control/config", "control/ruleset", "dataplane", "dataplane/filter"},
	"cmd/dpfw": {"configs", "control/config", "control/daemon", "control/metrics", "control/replay", "control/ruleset",
		"dataplane", "dataplane/filter", "dataplane/rules"},
	"perf/pcapgen": {"packet", "packet/header"},
	"perf/rulegen": {},
	"internal/e2e": {"control/config", "perf/pcapgen"},
	"perf":         {"control/config", "control/hasync", "internal/e2e", "perf/pcapgen", "perf/rulegen"},
}

// TestLayers checks every package's project imports against importRules.
func TestLayers(t *testing.T) {
	const mod = "github.com/dpfw/dpfw/"
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], mod)
		seen[pkg] = true
		allowed, ok := importRules[pkg]
		if !ok {
			t.Errorf("package %s is not in the layer list (dataplane/deps_test.go): say what it may import", pkg)
			continue
		}
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			if dep := strings.TrimPrefix(imp, mod); !slices.Contains(allowed, dep) {
				t.Errorf("%s imports %s, which its layer may not (allowed: %v)", pkg, dep, allowed)
			}
		}
	}
	for pkg := range importRules {
		if !seen[pkg] {
			t.Errorf("the layer list names %s, which is no package", pkg)
		}
	}
}
