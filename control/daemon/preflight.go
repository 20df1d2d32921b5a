package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/dpfw/dpfw/control/config"
	"golang.org/x/sys/unix"
)

// Finding is one pre-flight result: an error (start would fail or misbehave)
// or a warning, with the key it concerns and the fix.
type Finding struct {
	Key     string
	Msg     string
	Warning bool
}

// Host is what the pre-flight checks read of the machine: the root of
// /sys and /proc (a test points them at a fake tree), the hugepages, and
// the locked-memory limit.
type Host struct {
	Sys, Proc string
	// HugeFree and HugeMounted describe the 2 MB hugepages.
	HugeFree    int
	HugeMounted bool
	// MemlockBytes is RLIMIT_MEMLOCK's soft limit (-1: unlimited).
	MemlockBytes int64
}

// LocalHost reads this machine.
func LocalHost() Host {
	h := Host{Sys: "/sys", Proc: "/proc", MemlockBytes: -1}
	h.HugeFree, h.HugeMounted = hugepagesAvailable()
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) == nil && rl.Cur != unix.RLIM_INFINITY {
		h.MemlockBytes = int64(rl.Cur)
	}
	return h
}

// dpdkDrivers are the kernel drivers a PCI port must be bound to for DPDK.
var dpdkDrivers = []string{"vfio-pci", "uio_pci_generic", "igb_uio"}

// Preflight checks what a start needs of the machine that the config
// alone cannot say: PCI devices exist and are bound to a DPDK driver, the
// worker CPUs exist and are online (and, a warning, isolated), hugepages
// can hold the plan's memory, and the locked-memory limit allows it.
// memBytes is the start-up memory plan. `dpfw check` prints the findings;
// `dpfw run` refuses to start on an error.
func Preflight(cfg *config.Config, h Host, memBytes int64) []Finding {
	var out []Finding
	add := func(warn bool, key, format string, a ...any) {
		out = append(out, Finding{Key: key, Msg: fmt.Sprintf(format, a...), Warning: warn})
	}
	for i, p := range cfg.Ports {
		if !config.IsPCI(p.Device) {
			continue
		}
		key := fmt.Sprintf("ports[%d].device", i)
		addr := p.DeviceName()
		if strings.Count(addr, ":") == 1 {
			addr = "0000:" + addr
		}
		dev := filepath.Join(h.Sys, "bus/pci/devices", addr)
		if _, err := os.Stat(dev); err != nil {
			add(false, key, "%s: no such PCI device on this machine (lspci -D lists them)", p.Device)
			continue
		}
		drv, err := os.Readlink(filepath.Join(dev, "driver"))
		switch {
		case err != nil:
			add(false, key, "%s is bound to no driver: bind it to vfio-pci (dpdk-devbind.py --bind=vfio-pci %s)", p.Device, addr)
		case !slices.Contains(dpdkDrivers, filepath.Base(drv)):
			add(false, key, "%s is bound to %s, a kernel driver: bind it to vfio-pci for DPDK (dpdk-devbind.py --bind=vfio-pci %s)", p.Device, filepath.Base(drv), addr)
		}
	}
	online := cpuList(filepath.Join(h.Sys, "devices/system/cpu/online"))
	isolated := cpuList(filepath.Join(h.Sys, "devices/system/cpu/isolated"))
	for i, c := range cfg.Workers.CPUs {
		key := fmt.Sprintf("workers.cpus[%d]", i)
		switch {
		case online != nil && !online[c]:
			add(false, key, "CPU %d does not exist or is offline on this machine (online: %s)", c, cpuRange(online))
		case isolated != nil && !isolated[c]:
			add(true, key, "CPU %d is not isolated (isolcpus=): other tasks may run on it and stall the worker", c)
		}
	}
	needPages := int(memBytes>>21) + 1
	switch cfg.EAL.Hugepages {
	case "yes":
		if !h.HugeMounted {
			add(false, "eal.hugepages", "yes, but no hugetlbfs is mounted: mount -t hugetlbfs nodev /dev/hugepages (make hugepages)")
		} else if h.HugeFree < needPages {
			add(false, "eal.hugepages", "yes, but %d free 2 MB pages hold less than the %d the memory plan needs: raise vm.nr_hugepages", h.HugeFree, needPages)
		}
	case "auto":
		if !h.HugeMounted || h.HugeFree < cfg.EAL.MemoryMB/2 {
			add(true, "eal.hugepages", "auto: %d free 2 MB pages (hugetlbfs mounted: %v) are too few for eal.memory_mb %d: dpfw will start with --no-huge (slower); make hugepages", h.HugeFree, h.HugeMounted, cfg.EAL.MemoryMB)
		}
	}
	pci := slices.ContainsFunc(cfg.Ports, func(p config.Port) bool { return config.IsPCI(p.Device) })
	if pci && h.MemlockBytes >= 0 && h.MemlockBytes < int64(cfg.EAL.MemoryMB)<<20 {
		add(true, "eal.memory_mb", "the locked-memory limit (RLIMIT_MEMLOCK %d bytes) is below eal.memory_mb: DPDK may fail to pin memory (vfio); raise it (ulimit -l unlimited, or LimitMEMLOCK=infinity in the unit)", h.MemlockBytes)
	}
	return out
}

// cpuList reads a kernel CPU list ("0-3,6") into a set; nil if the file
// cannot be read (nothing to check against), empty if it is empty.
func cpuList(path string) map[int]bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	set := map[int]bool{}
	for _, part := range strings.Split(strings.TrimSpace(string(b)), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if isRange {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil {
			continue
		}
		for c := a; c <= z && c-a < 4096; c++ {
			set[c] = true
		}
	}
	return set
}

func cpuRange(set map[int]bool) string {
	var cs []int
	for c := range set {
		cs = append(cs, c)
	}
	slices.Sort(cs)
	var parts []string
	for i := 0; i < len(cs); {
		j := i
		for j+1 < len(cs) && cs[j+1] == cs[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(cs[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cs[i], cs[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}
