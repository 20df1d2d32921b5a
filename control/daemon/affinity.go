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
