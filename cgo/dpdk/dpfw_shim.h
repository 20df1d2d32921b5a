/* dpfw's thin C shim over DPDK 22.11. Only the cgo/dpdk package includes it.
 * Every function here is called at most once per burst from Go (see io.go). */
#ifndef DPFW_SHIM_H
#define DPFW_SHIM_H

#include <stdint.h>
#include <rte_config.h>
#include <rte_version.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>
#include <rte_mempool.h>
#include <rte_ethdev.h>
#include <rte_ring.h>
#include <rte_malloc.h>

#if RTE_VERSION < RTE_VERSION_NUM(21, 11, 0, 0)
#error "dpfw needs DPDK 21.11 or newer (Debian 12 ships 22.11)"
#endif

#define DPFW_BURST 32
/* The most mbufs Go holds (fragments of incomplete datagrams) and so the
 * most it can release at once: dataplane.FragHeld (checked by io_test.go). */
#define DPFW_HOLD_MAX 256
/* A release to free instead of send. */
#define DPFW_REL_FREE 0xffff
#define DPFW_MAX_RXQ 32

/* Offsets of the rte_mbuf fields that Go reads directly (mbuf_unsafe.go).
 * mbuf_test.go compares them with the Go constants. */
enum {
	DPFW_MBUF_SIZE = sizeof(struct rte_mbuf),
	DPFW_MBUF_BUF_ADDR_OFF = offsetof(struct rte_mbuf, buf_addr),
	DPFW_MBUF_DATA_OFF_OFF = offsetof(struct rte_mbuf, data_off),
	DPFW_MBUF_PORT_OFF = offsetof(struct rte_mbuf, port),
	DPFW_MBUF_OL_FLAGS_OFF = offsetof(struct rte_mbuf, ol_flags),
	DPFW_MBUF_PKT_LEN_OFF = offsetof(struct rte_mbuf, pkt_len),
	DPFW_MBUF_DATA_LEN_OFF = offsetof(struct rte_mbuf, data_len),
	DPFW_MBUF_NB_SEGS_OFF = offsetof(struct rte_mbuf, nb_segs),
	DPFW_MBUF_RSS_OFF = offsetof(struct rte_mbuf, hash.rss),
	DPFW_MBUF_BUF_LEN_OFF = offsetof(struct rte_mbuf, buf_len),
};

/* One burst's worth of mbuf pointers, allocated in C memory (rte_zmalloc) so
 * that cgo's pointer checks never walk it and Go never stores a Go pointer in it. */
/* Actions Go gives the packets of the last burst (io->action). */
enum {
	DPFW_ACT_DROP = 0,  /* free */
	DPFW_ACT_TX = 1,    /* send on tx_port/tx_queue */
	DPFW_ACT_STEER = 2, /* 2 + w: enqueue on steer_ring[w] */
	DPFW_ACT_REPLY = 16, /* send on reply_port/reply_queue (REJECT answers) */
	DPFW_ACT_HOLD = 17,  /* neither: Go keeps the mbuf, and releases it later */
};

struct dpfw_io {
	struct rte_mbuf *rx[DPFW_BURST];   /* out: received this call */
	uint8_t action[DPFW_BURST];        /* in: what to do with rx[i], i < n_action */
	uint16_t n_action;                 /* in: how many of rx have an action */
	struct rte_mbuf *tx[DPFW_BURST];   /* scratch: partitioned from rx */
	struct rte_mbuf *drop[DPFW_BURST]; /* scratch */
	uint16_t tx_port, tx_queue, n_tx, n_drop;
	struct rte_mbuf *reply[DPFW_BURST]; /* scratch */
	uint16_t reply_port, reply_queue, n_reply, n_reply_sent; /* n_reply_sent: out */
	uint16_t n_rx, n_sent;     /* out */
	/* The worker's rx queues, polled round-robin from cursor until one
	 * returns packets: empty polls never return to Go. */
	uint16_t n_rxq, cursor;
	uint16_t rx_index;         /* out: which rxq the burst came from */
	uint16_t rx_port[DPFW_MAX_RXQ], rx_queue[DPFW_MAX_RXQ];
	struct rte_ring *rx_ring[DPFW_MAX_RXQ]; /* non-NULL: dequeue this ring instead */
	uint32_t max_empty;        /* in: give up after this many empty polls */
	uint64_t empty_polls;      /* out: cumulative */
	uint64_t tsc;              /* out: rte_rdtsc() when the rx poll returned */
	/* Software steering (several workers on a device without RSS): packets to
	 * hand to other workers' rings, freed when the ring is full. */
	struct rte_ring *steer_ring[8];
	struct rte_mbuf *steer[8][DPFW_BURST];
	uint16_t n_steer[8];
	uint16_t n_steer_full[8]; /* out: freed because the ring was full */
	/* Held mbufs Go releases: rel[i] goes out on rel_port[i]/rel_queue[i]
	 * (DPFW_REL_FREE: freed), before the burst's own tx, so a datagram's
	 * fragments keep their order; rel_sent[i] (out) says whether it went. */
	uint16_t n_rel, n_rel_done; /* in; out: how many were handled */
	struct rte_mbuf *rel[DPFW_HOLD_MAX];
	uint16_t rel_port[DPFW_HOLD_MAX], rel_queue[DPFW_HOLD_MAX];
	uint8_t rel_sent[DPFW_HOLD_MAX];
};

int dpfw_eal_init(int argc, char **argv);
/* Sends DPDK's log to fd, each line prefixed with its level digit (1-8,
 * RTE_LOG_EMERG … RTE_LOG_DEBUG). */
int dpfw_log_to_fd(int fd);
int dpfw_errno(void);
const char *dpfw_strerror(int err);

struct rte_mempool *dpfw_pool_create(const char *name, unsigned n, unsigned cache,
				     uint16_t data_room, int socket);
unsigned dpfw_pool_in_use(const struct rte_mempool *mp);
unsigned dpfw_pool_avail(const struct rte_mempool *mp);
void dpfw_pool_free(struct rte_mempool *mp);

struct dpfw_port_info {
	char driver[64];
	uint16_t max_rx_queues, max_tx_queues;
	uint16_t max_mtu;
	uint8_t hash_key_size;
	uint64_t flow_type_rss_offloads;
	uint64_t rss_hf; /* what was enabled */
	uint64_t rx_csum; /* receive checksum offloads enabled */
	uint32_t socket;
	uint32_t if_index; /* the host interface the port was created on (net_tap), 0 if none */
	uint8_t mac[6];
};

int dpfw_port_by_name(const char *name, uint16_t *port);
int dpfw_port_setup(uint16_t port, struct rte_mempool *mp, uint16_t nrxq, uint16_t ntxq,
		    uint16_t nrxd, uint16_t ntxd, int promisc, int rx_csum, uint16_t mtu, struct dpfw_port_info *info);
int dpfw_port_stop(uint16_t port);
int dpfw_port_close(uint16_t port);
int dpfw_link(uint16_t port, uint32_t *speed, int *up, int *duplex);
int dpfw_port_stats(uint16_t port, struct rte_eth_stats *st);

int dpfw_thread_register(int cpu, unsigned *lcore);
void dpfw_thread_unregister(void);

struct dpfw_io *dpfw_io_alloc(void);
void dpfw_io_free(struct dpfw_io *io);
void dpfw_io(struct dpfw_io *io);
/* Frees every mbuf still referenced by io (tx, drop and release lists, but
 * not the mbufs Go holds); used at shutdown. */
void dpfw_io_flush(struct dpfw_io *io);

struct rte_ring *dpfw_ring_create(const char *name, unsigned count, int socket);
void dpfw_ring_drain_free(struct rte_ring *r);
void dpfw_ring_free(struct rte_ring *r);

uint64_t dpfw_tsc_hz(void);
uint64_t dpfw_rdtsc(void);

#endif
