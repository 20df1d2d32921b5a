// Package daemon starts and stops dpfw's data plane from a validated config:
// EAL arguments, the mbuf pool, ports, links and workers. It owns every DPDK
// resource and releases them in order on Stop, checking that no mbuf leaked.
package daemon
