// Package metrics exports dpfw's statistics to Prometheus. Workers never call
// client_golang: a custom Collector reads their plain per-core counters (and
// the ports' rte_eth_stats) at scrape time and builds const metrics.
package metrics
