package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpfw/dpfw/control/config"
)

// TestPreflight: each bad case gives its finding, on a fake /sys.
func TestPreflight(t *testing.T) {
	sys := t.TempDir()
	mk := func(path, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, path), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("devices/system/cpu/online", "0-3\n")
	mk("devices/system/cpu/isolated", "2-3\n")
	for _, d := range []struct{ addr, driver string }{{"0000:01:00.0", "vfio-pci"}, {"0000:01:00.1", "ixgbe"}, {"0000:02:00.0", ""}} {
		dev := filepath.Join(sys, "bus/pci/devices", d.addr)
		if err := os.MkdirAll(dev, 0o755); err != nil {
			t.Fatal(err)
		}
		if d.driver != "" {
			if err := os.Symlink("../../../bus/pci/drivers/"+d.driver, filepath.Join(dev, "driver")); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg, err := config.Load("c.yaml", []byte(`
eal: {file_prefix: t, hugepages: "yes", memory_mb: 1024}
mempool: {mbufs: 40000}
ports:
  - {name: a, device: "0000:01:00.0"}
  - {name: b, device: "0000:01:00.1"}
  - {name: c, device: "0000:02:00.0"}
  - {name: d, device: "0000:03:00.0"}
links: [{name: w, ports: [a, b]}, {name: x, ports: [c, d]}]
workers: {cpus: [2, 1, 7]}
rules: {allow_empty: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	h := Host{Sys: sys, HugeMounted: true, HugeFree: 10, MemlockBytes: 64 << 10}
	var got []string
	for _, f := range Preflight(cfg, h, 600<<20) {
		got = append(got, map[bool]string{false: "error", true: "warning"}[f.Warning]+" "+f.Key+": "+f.Msg)
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"error ports[1].device: 0000:01:00.1 is bound to ixgbe, a kernel driver: bind it to vfio-pci",
		"error ports[2].device: 0000:02:00.0 is bound to no driver",
		"error ports[3].device: 0000:03:00.0: no such PCI device",
		"warning workers.cpus[1]: CPU 1 is not isolated",
		"error workers.cpus[2]: CPU 7 does not exist or is offline on this machine (online: 0-3)",
		"error eal.hugepages: yes, but 10 free 2 MB pages hold less than the 301 the memory plan needs",
		"warning eal.memory_mb: the locked-memory limit",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no finding %q in:\n%s", want, all)
		}
	}
	if strings.Contains(all, "ports[0]") || strings.Contains(all, "workers.cpus[0]") {
		t.Errorf("a good port or an isolated CPU was reported:\n%s", all)
	}
}
