package dpdk

/*
#include <stdlib.h>
#include "dpfw_shim.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

var eal struct {
	mu   sync.Mutex
	done bool
	err  error
	args []string
}

// Init initializes the EAL with args (args[0] is the program name). DPDK can
// only be initialized once per process: later calls return the first result,
// and fail if they ask for different arguments.
func Init(args []string) error {
	eal.mu.Lock()
	defer eal.mu.Unlock()
	if eal.done {
		if fmt.Sprint(args) != fmt.Sprint(eal.args) && eal.err == nil {
			return fmt.Errorf("dpdk: EAL already initialized with %q", eal.args)
		}
		return eal.err
	}
	eal.done = true
	eal.args = append([]string(nil), args...)
	argv := make([]*C.char, len(args)+1)
	for i, a := range args {
		argv[i] = C.CString(a)
	}
	// rte_eal_init may keep pointers into argv: leak them on purpose.
	ret := C.dpfw_eal_init(C.int(len(args)), (**C.char)(unsafe.Pointer(&argv[0])))
	if ret < 0 {
		eal.err = rteErrno("rte_eal_init")
	}
	return eal.err
}

// RegisterThread pins the calling OS thread to cpu (if cpu >= 0) and registers
// it with DPDK as a non-EAL lcore, so that per-lcore mempool caches work.
// Precondition: the calling goroutine holds runtime.LockOSThread.
func RegisterThread(cpu int) (lcore uint, err error) {
	var l C.unsigned
	if err := errno("rte_thread_register", C.dpfw_thread_register(C.int(cpu), &l)); err != nil {
		return 0, err
	}
	return uint(l), nil
}

// UnregisterThread releases the lcore id taken by RegisterThread.
func UnregisterThread() { C.dpfw_thread_unregister() }

// TSCClock converts time stamp counter readings to nanoseconds. The zero
// value is not usable; use NewTSCClock.
type TSCClock struct {
	hz    uint64
	mult  uint64 // ns per cycle in 32.32 fixed point
	start uint64
}

// NewTSCClock returns a clock whose zero is now. Precondition: EAL initialized.
func NewTSCClock() TSCClock {
	hz := uint64(C.dpfw_tsc_hz())
	if hz == 0 {
		hz = 1
	}
	return TSCClock{hz: hz, mult: (1e9 << 32) / hz, start: uint64(C.dpfw_rdtsc())}
}

// Nanos converts a TSC reading taken after the clock's creation to
// nanoseconds since then.
func (c *TSCClock) Nanos(tsc uint64) int64 {
	d := tsc - c.start
	// (d * mult) >> 32 without overflow for ~2^32 s of uptime deltas.
	hi, lo := d>>32, d&0xffffffff
	return int64(hi*c.mult + (lo*c.mult)>>32)
}

// LogTo sends DPDK's log (EAL, drivers) to fd instead of stderr: each line
// prefixed with its level digit, 1 (RTE_LOG_EMERG) to 8 (RTE_LOG_DEBUG).
// Call it before Init, so that the EAL's own messages go there too.
func LogTo(fd uintptr) error {
	if C.dpfw_log_to_fd(C.int(fd)) != 0 {
		return fmt.Errorf("dpdk: rte_openlog_stream failed")
	}
	return nil
}
