package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "update testdata/*.golden")

// TestCLIGolden compares the output of deterministic commands with golden
// files (go test -run TestCLIGolden -update rewrites them).
func TestCLIGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"rules-check-tutorial", []string{"rules", "check", "../../configs/tutorial.rules"}},
		{"rules-import-tutorial", []string{"rules", "import", "../../configs/tutorial.rules"}},
		{"check-structured", []string{"check", "--config", "../../configs/structured.yaml"}},
		{"rules-check-typos", []string{"rules", "check", "testdata/tutorial-as-written.rules"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, _ := runCLI(t, tt.args...)
			// Pre-flight warnings depend on the machine (isolated CPUs,
			// hugepages): the golden files hold the rest.
			var kept []string
			for _, l := range strings.SplitAfter(out, "\n") {
				if !strings.Contains(l, ": warning: ") {
					kept = append(kept, l)
				}
			}
			out = strings.Join(kept, "")
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if out != string(want) {
				t.Errorf("dpfw %v output changed:\n--- got\n%s--- want\n%s", tt.args, out, want)
			}
		})
	}
}
