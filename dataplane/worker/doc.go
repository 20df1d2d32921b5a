// Package worker runs dpfw's polling lcores: one goroutine per configured CPU,
// locked to its OS thread, pinned, and registered with DPDK as a non-EAL lcore
// (rte_thread_register) so that per-lcore mempool caches work.
//
// Each worker owns rx queue i and tx queue i on every port (i = worker index)
// and loops: one fused DPDK call (send the last burst, free its drops, receive
// the next), decode, pipeline verdicts, stage. See ARCHITECTURE.md.
package worker
