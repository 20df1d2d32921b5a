package daemon

import (
	"slices"
	"testing"

	"github.com/dpfw/dpfw/control/config"
)

func TestPlanEALHugepages(t *testing.T) {
	for _, tc := range []struct {
		huge       string
		want, nope string
	}{
		{"yes", "--huge-unlink", "--no-huge"},
		{"no", "--no-huge", "--huge-unlink"},
	} {
		cfg := &config.Config{}
		cfg.EAL.Hugepages = tc.huge
		cfg.EAL.FilePrefix = "t"
		cfg.EAL.MemoryMB = 256
		cfg.Ports = []config.Port{{Name: "a", Device: "net_null0"}}
		p := PlanEAL(cfg)
		if !slices.Contains(p.Args, tc.want) || slices.Contains(p.Args, tc.nope) {
			t.Errorf("hugepages %s: args %q, want %s and not %s", tc.huge, p.Args, tc.want, tc.nope)
		}
		if !slices.Contains(p.Args, "--no-pci") || !slices.Contains(p.Args, "net_null0") {
			t.Errorf("hugepages %s: args %q lack --no-pci or the vdev", tc.huge, p.Args)
		}
	}
}
