// Package dataplane is the per-worker packet pipeline: given a burst of
// frames received on one port, it decodes them, gives each a verdict
// (connection tracking, then the compiled rule set), and counts what it did.
//
// It works on []byte frames and plain Go values and never calls C, so it
// builds and tests with CGO_ENABLED=0; the lcore loop that feeds it from DPDK
// lives in dataplane/worker. A Pipeline is owned by one worker and is not safe
// for concurrent use; its Counters are safe to read from any goroutine.
package dataplane
