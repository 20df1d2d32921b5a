package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dpfw/dpfw/perf/rulegen"
)

// ruleScale compares, for each size and generator (rulegen.Flat and
// rulegen.Tenants), dpfw's reading and compiling of the rule file
// ("dpfw rules check -q": parse, compile, summary) with a real
// iptables-restore of the same file into a fresh network namespace,
// rounds alternating, and prints the medians with dpfw's peak memory and
// the growth from the smallest size to the largest.
func ruleScale(dpfw, dir string, sizes []int, rounds int) []string {
	var rows []string
	first := map[string]float64{}
	for _, n := range sizes {
		for _, g := range []struct {
			name string
			text func(int) string
		}{{"flat", rulegen.Flat}, {"tenants", func(n int) string { return rulegen.Tenants(n, 1) }}} {
			path := filepath.Join(dir, fmt.Sprintf("%s-%d.rules", g.name, n))
			check(os.WriteFile(path, []byte(g.text(n)), 0o644))
			var dt, it []float64
			var rss int64
			for r := 0; r < rounds; r++ {
				d, m := timeRun(dpfw, "rules", "check", "-q", path)
				dt, rss = append(dt, d), max(rss, m)
				it = append(it, timeRestore(path))
			}
			d, i := median(dt), median(it)
			growth := ""
			if f, ok := first[g.name]; ok {
				growth = fmt.Sprintf("%.1f", d/f)
			} else {
				first[g.name] = d
			}
			fmt.Printf("%-8s %7d rules: dpfw rules check %.3f s (peak %d MB), iptables-restore %.3f s, dpfw ÷ iptables %.2f\n",
				g.name, n, d, rss>>20, i, d/i)
			rows = append(rows, fmt.Sprintf("| %s | %d | %.3f | %d | %.3f | %.2f | %s |", g.name, n, d, rss>>20, i, d/i, growth))
		}
	}
	return rows
}

// timeRun runs a command and returns its wall time (s) and peak RSS (B).
func timeRun(name string, args ...string) (float64, int64) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		check(fmt.Errorf("%s %v: %v\n%s", name, args, err, out.String()))
	}
	took := time.Since(start).Seconds()
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ru == nil {
		return took, 0
	}
	return took, ru.Maxrss << 10
}

// timeRestore loads path with iptables-restore into a new network
// namespace (removed after) and returns the load's wall time.
func timeRestore(path string) float64 {
	ns := fmt.Sprintf("dpfw-perf-rs-%d", os.Getpid())
	_ = exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		check(fmt.Errorf("ip netns add: %v\n%s", err, out))
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	d, _ := timeRun("ip", "netns", "exec", ns, "iptables-restore", path)
	return d
}

// padRules is n rules that no perf workload's packet matches (TCP from
// 198.19.0.0/16 to distinct ports), put first in INPUT so that every new
// flow is classified through them: a reload load at rule-set scale.
func padRules(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "-A INPUT -s 198.19.%d.%d -p tcp --dport %d -j DROP\n", (i>>8)&255, i&255, 1+i%65000)
	}
	return b.String()
}
