package daemon

import (
	"fmt"
	"os"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// isolateWorkers moves every thread of the process off the worker CPUs, so
// that Go's runtime threads, EAL's control threads and the metrics server
// never preempt a polling worker (threads created later inherit the mask of
// their creator). Workers then pin themselves to their own CPU. It returns
// the housekeeping CPUs, or nil if there are none left (every CPU polls),
// in which case nothing is changed.
func isolateWorkers(workerCPUs []int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, err
	}
	for _, c := range workerCPUs {
		set.Clear(c)
	}
	var house []int
	for c := 0; c < runtime.NumCPU()*2 && c < 1024; c++ {
		if set.IsSet(c) {
			house = append(house, c)
		}
	}
	if len(house) == 0 {
		return nil, nil
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread may exit while we walk; that is not an error.
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return nil, fmt.Errorf("moving thread %d off the worker CPUs: %w", tid, err)
		}
	}
	return house, nil
}

// fixProcs sets GOMAXPROCS to one P per worker (each holds its P for
// good: it polls and never parks) plus one per housekeeping CPU (at least
// one), unless the GOMAXPROCS variable sets it. Setting it also stops the
// runtime's own updates (Go ≥ 1.25), which follow the CPU affinity of the
// thread that checks: after isolateWorkers that is the housekeeping CPUs
// alone, so the runtime would lower GOMAXPROCS to their number and leave
// the workers' Ps all there is: the control plane (the sync's and the
// events' pumps, metrics, the API) would then run only when sysmon takes
// a P back from a worker's DPDK call, tens of milliseconds late. It
// returns the value set, and whether it set one.
func fixProcs(workers, house int) (int, bool) {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0, false
	}
	n := workers + max(house, 1)
	runtime.GOMAXPROCS(n)
	return n, true
}
