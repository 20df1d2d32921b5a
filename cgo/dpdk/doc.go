// Package dpdk is dpfw's own thin binding to DPDK 22.11: EAL start-up, mbuf
// pools, ethdev ports, per-lcore thread registration, rings, and the one
// fused rx/tx/free call that the data plane makes per burst.
//
// It is the only package in dpfw that imports "C". Everything above it works
// on []byte views and plain Go values. Go reads the mbuf fields it needs
// (data pointer, lengths, port, RSS hash) directly from memory (mbuf_unsafe.go),
// at offsets checked against C's offsetof in a test, so the per-packet path
// never crosses into C: there is exactly one cgo call per burst (IO.Do).
//
// As of 2026-11-25 this binds against Debian 12's shared DPDK (pkg-config
// libdpdk, dynamic linking): the static flags would pull in every driver.
package dpdk
