package dataplane_test

import (
	"os/exec"
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
		{"github.com/dpfw/dpfw/dataplane/packet", true},
		{"github.com/dpfw/dpfw/dataplane/header", true},
		{"github.com/dpfw/dpfw/dataplane/filter", true},
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
