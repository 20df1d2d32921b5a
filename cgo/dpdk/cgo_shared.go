package dpdk

/*
#cgo pkg-config: libdpdk
#cgo CFLAGS: -O3 -DALLOW_EXPERIMENTAL_API -Wno-deprecated-declarations -Werror=implicit-function-declaration
#include "dpfw_shim.h"
*/
import "C"

import (
	"fmt"
	"syscall"
)

// BurstSize is the number of packets received per rx call.
const BurstSize = C.DPFW_BURST

// Error is a DPDK failure: the operation, and DPDK's own error text.
type Error struct {
	Op   string
	Code int // positive errno value
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (errno %d)", e.Op, C.GoString(C.dpfw_strerror(C.int(e.Code))), e.Code)
}

// Unwrap returns the errno as a syscall.Errno, so errors.Is(err, syscall.EINVAL) works.
func (e *Error) Unwrap() error { return syscall.Errno(e.Code) }

// errno turns a DPDK return value (0 or negative errno) into an error.
func errno(op string, ret C.int) error {
	if ret >= 0 {
		return nil
	}
	return &Error{Op: op, Code: int(-ret)}
}

// rteErrno reports rte_errno as an error, for calls that return NULL or -1.
func rteErrno(op string) error {
	code := int(C.dpfw_errno())
	if code == 0 {
		return &Error{Op: op, Code: int(syscall.EINVAL)}
	}
	return &Error{Op: op, Code: code}
}
