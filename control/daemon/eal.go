package daemon

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/dpfw/dpfw/control/config"
)

// EALPlan is what dpfw will pass to rte_eal_init, and why.
type EALPlan struct {
	Args      []string
	Hugepages bool
	Why       string // how the hugepage choice was made
}

// PlanEAL builds the EAL argument list for cfg. The main lcore (the control
// side) may run on every CPU so that EAL does not pin the Go thread that calls
// rte_eal_init; workers pin themselves (worker.Run).
func PlanEAL(cfg *config.Config) EALPlan {
	p := EALPlan{}
	switch cfg.EAL.Hugepages {
	case "yes":
		p.Hugepages, p.Why = true, "eal.hugepages: yes"
	case "no":
		p.Hugepages, p.Why = false, "eal.hugepages: no"
	default:
		free, mounted := hugepagesAvailable()
		need := cfg.EAL.MemoryMB / 2
		p.Hugepages = mounted && free >= need
		p.Why = fmt.Sprintf("eal.hugepages: auto: hugetlbfs mounted=%v, %d free 2 MB pages, %d needed", mounted, free, need)
	}
	ncpu := runtime.NumCPU()
	args := []string{"dpfw", "--file-prefix", cfg.EAL.FilePrefix, "--lcores", fmt.Sprintf("0@(0-%d)", ncpu-1)}
	if ncpu == 1 {
		args[4] = "0@0"
	}
	if p.Hugepages {
		// Unlink each hugetlbfs file as soon as it is mapped: the pages go
		// back to the kernel when dpfw exits, even on a crash or SIGKILL.
		// Without it, DPDK leaves -m worth of files (512 pages for 1 GB)
		// in /dev/hugepages after every stop. dpfw has no secondary
		// processes, which are what the files are kept for.
		args = append(args, "--huge-unlink")
	} else {
		args = append(args, "--no-huge")
	}
	args = append(args, "-m", strconv.Itoa(cfg.EAL.MemoryMB))
	pci := false
	for _, port := range cfg.Ports {
		if config.IsPCI(port.Device) {
			pci = true
			args = append(args, "-a", port.Device)
		} else {
			args = append(args, "--vdev", port.Device)
		}
	}
	if !pci {
		args = append(args, "--no-pci")
	}
	args = append(args, cfg.EAL.Args...)
	p.Args = args
	return p
}

// hugepagesAvailable reads free 2 MB hugepages from /proc/meminfo and whether
// a hugetlbfs is mounted.
func hugepagesAvailable() (free int, mounted bool) {
	if f, err := os.Open("/proc/meminfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), "HugePages_Free:"); ok {
				free, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "hugetlbfs" {
				mounted = true
			}
		}
	}
	return free, mounted
}
