#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <rte_log.h>
#include <pthread.h>
#include <sched.h>
#include "dpfw_shim.h"

int dpfw_eal_init(int argc, char **argv) { return rte_eal_init(argc, argv); }
int dpfw_errno(void) { return rte_errno; }

/* The log stream: a FILE whose writes go to a pipe, each line prefixed
 * with the level of the message being written. */
struct log_sink {
	int fd;
	int at_line_start;
};

static ssize_t log_write(void *cookie, const char *buf, size_t n)
{
	struct log_sink *s = cookie;
	size_t done = 0;
	while (done < n) {
		if (s->at_line_start) {
			int lvl = rte_log_cur_msg_loglevel();
			char c = (char)('0' + (lvl >= 1 && lvl <= 8 ? lvl : 7));
			if (write(s->fd, &c, 1) != 1)
				return -1;
			s->at_line_start = 0;
		}
		const char *nl = memchr(buf + done, '\n', n - done);
		size_t len = nl ? (size_t)(nl - (buf + done)) + 1 : n - done;
		ssize_t w = write(s->fd, buf + done, len);
		if (w <= 0)
			return done ? (ssize_t)done : -1;
		done += (size_t)w;
		if (nl && (size_t)w == len)
			s->at_line_start = 1;
	}
	return (ssize_t)n;
}

int dpfw_log_to_fd(int fd)
{
	static struct log_sink sink;
	sink.fd = fd;
	sink.at_line_start = 1;
	cookie_io_functions_t io = {.write = log_write};
	FILE *f = fopencookie(&sink, "w", io);
	if (f == NULL)
		return -1;
	setvbuf(f, NULL, _IOLBF, 0);
	return rte_openlog_stream(f);
}
const char *dpfw_strerror(int err) { return rte_strerror(err); }

struct rte_mempool *dpfw_pool_create(const char *name, unsigned n, unsigned cache,
				     uint16_t data_room, int socket)
{
	return rte_pktmbuf_pool_create(name, n, cache, 0, data_room, socket);
}
unsigned dpfw_pool_in_use(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }
unsigned dpfw_pool_avail(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }
void dpfw_pool_free(struct rte_mempool *mp) { rte_mempool_free(mp); }

int dpfw_port_by_name(const char *name, uint16_t *port)
{
	return rte_eth_dev_get_port_by_name(name, port);
}

/* The symmetric Toeplitz key: 0x6D5A repeated makes hash(a,b) == hash(b,a),
 * so both directions of a flow land on the same queue (Woo & Park, 2012). */
static void symmetric_key(uint8_t *key, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		key[i] = (i & 1) ? 0x5A : 0x6D;
}

int dpfw_port_setup(uint16_t port, struct rte_mempool *mp, uint16_t nrxq, uint16_t ntxq,
		    uint16_t nrxd, uint16_t ntxd, int promisc, int rx_csum, uint16_t mtu,
		    struct dpfw_port_info *info)
{
	struct rte_eth_dev_info di;
	struct rte_eth_conf conf;
	static uint8_t key[64];
	int ret;

	if (!rte_eth_dev_is_valid_port(port))
		return -ENODEV;
	ret = rte_eth_dev_info_get(port, &di);
	if (ret != 0)
		return ret;
	memset(info, 0, sizeof(*info));
	snprintf(info->driver, sizeof(info->driver), "%s", di.driver_name ? di.driver_name : "");
	info->max_rx_queues = di.max_rx_queues;
	info->max_tx_queues = di.max_tx_queues;
	info->hash_key_size = di.hash_key_size;
	info->flow_type_rss_offloads = di.flow_type_rss_offloads;
	info->socket = (uint32_t)rte_eth_dev_socket_id(port);
	info->if_index = di.if_index; /* as created at probe, before the start below */
	if (nrxq > di.max_rx_queues || ntxq > di.max_tx_queues)
		return -E2BIG;

	memset(&conf, 0, sizeof(conf));
	/* Ask only for the hash types the device reports: net_tap and net_pcap
	 * report none and fail rte_eth_dev_configure with -EINVAL otherwise. */
	uint64_t hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & di.flow_type_rss_offloads;
	if (nrxq > 1 && hf != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		unsigned klen = di.hash_key_size ? di.hash_key_size : 40;
		if (klen > sizeof(key))
			klen = sizeof(key);
		symmetric_key(key, klen);
		conf.rx_adv_conf.rss_conf.rss_key = key;
		conf.rx_adv_conf.rss_conf.rss_key_len = klen;
		conf.rx_adv_conf.rss_conf.rss_hf = hf;
		info->rss_hf = hf;
	}
	/* Receive checksum validation, where the device offers it: the
	 * verdicts arrive in each mbuf's ol_flags, which Go reads. */
	if (rx_csum) {
		conf.rxmode.offloads |= di.rx_offload_capa &
			(RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM | RTE_ETH_RX_OFFLOAD_UDP_CKSUM);
		info->rx_csum = conf.rxmode.offloads;
	}
	if (di.tx_offload_capa & RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE)
		conf.txmode.offloads |= RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE;

	ret = rte_eth_dev_configure(port, nrxq, ntxq, &conf);
	if (ret != 0)
		return ret;
	/* The MTU the config asks for (net_tap sets its kernel interface's);
	 * devices that cannot change it (net_pcap, net_null) keep theirs. */
	info->max_mtu = di.max_mtu;
	if (mtu != 0) {
		ret = rte_eth_dev_set_mtu(port, mtu);
		if (ret != 0 && ret != -ENOTSUP)
			return ret;
	}
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &nrxd, &ntxd);
	if (ret != 0)
		return ret;
	int socket = rte_eth_dev_socket_id(port);
	for (uint16_t q = 0; q < nrxq; q++) {
		struct rte_eth_rxconf rxc = di.default_rxconf;
		rxc.offloads = conf.rxmode.offloads;
		ret = rte_eth_rx_queue_setup(port, q, nrxd, socket, &rxc, mp);
		if (ret != 0)
			return ret;
	}
	for (uint16_t q = 0; q < ntxq; q++) {
		struct rte_eth_txconf txc = di.default_txconf;
		txc.offloads = conf.txmode.offloads;
		ret = rte_eth_tx_queue_setup(port, q, ntxd, socket, &txc);
		if (ret != 0)
			return ret;
	}
	ret = rte_eth_dev_start(port);
	if (ret != 0)
		return ret;
	if (promisc) {
		ret = rte_eth_promiscuous_enable(port);
		/* Some vdevs cannot change promiscuity; that is not fatal. */
		if (ret != 0 && ret != -ENOTSUP)
			return ret;
	}
	struct rte_ether_addr mac;
	if (rte_eth_macaddr_get(port, &mac) == 0)
		memcpy(info->mac, mac.addr_bytes, 6);
	return 0;
}

int dpfw_port_stop(uint16_t port) { return rte_eth_dev_stop(port); }
int dpfw_port_close(uint16_t port) { return rte_eth_dev_close(port); }

int dpfw_link(uint16_t port, uint32_t *speed, int *up, int *duplex)
{
	struct rte_eth_link l;
	int ret = rte_eth_link_get_nowait(port, &l);
	if (ret != 0)
		return ret;
	*speed = l.link_speed;
	*up = l.link_status;
	*duplex = l.link_duplex;
	return 0;
}

int dpfw_port_stats(uint16_t port, struct rte_eth_stats *st) { return rte_eth_stats_get(port, st); }

int dpfw_thread_register(int cpu, unsigned *lcore)
{
	if (cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
		int ret = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
		if (ret != 0)
			return -ret;
	}
	if (rte_thread_register() != 0)
		return -rte_errno;
	*lcore = rte_lcore_id();
	return 0;
}

void dpfw_thread_unregister(void) { rte_thread_unregister(); }

struct dpfw_io *dpfw_io_alloc(void)
{
	struct dpfw_io *io = rte_zmalloc("dpfw_io", sizeof(struct dpfw_io), RTE_CACHE_LINE_SIZE);
	if (io != NULL)
		io->max_empty = 1;
	return io;
}

void dpfw_io_free(struct dpfw_io *io) { rte_free(io); }

/* release sends or frees the held mbufs Go released, a run of one
 * destination at a time. */
static void release(struct dpfw_io *io)
{
	uint16_t n = io->n_rel;
	for (uint16_t i = 0; i < n;) {
		uint16_t port = io->rel_port[i], queue = io->rel_queue[i], j = i + 1;
		while (j < n && io->rel_port[j] == port && io->rel_queue[j] == queue)
			j++;
		uint16_t sent = 0;
		if (port != DPFW_REL_FREE)
			sent = rte_eth_tx_burst(port, queue, &io->rel[i], j - i);
		for (uint16_t k = i; k < j; k++)
			io->rel_sent[k] = k - i < sent;
		if (sent < j - i)
			rte_pktmbuf_free_bulk(&io->rel[i + sent], j - i - sent);
		i = j;
	}
	io->n_rel_done = n;
	io->n_rel = 0;
}

/* dpfw_io is the one crossing per burst: send what Go released and what it
 * staged from the last burst, free what it dropped and what the tx ring
 * refused, hand steered packets to their owners' rings, then receive the
 * next burst. */
void dpfw_io(struct dpfw_io *io)
{
	io->n_sent = 0;
	release(io);
	/* Partition the last burst by the actions Go gave it. */
	for (uint16_t i = 0; i < io->n_action; i++) {
		struct rte_mbuf *m = io->rx[i];
		uint8_t a = io->action[i];
		if (a == DPFW_ACT_TX) {
			io->tx[io->n_tx++] = m;
		} else if (a == DPFW_ACT_REPLY) {
			io->reply[io->n_reply++] = m;
		} else if (a == DPFW_ACT_HOLD) {
			/* Go keeps it. */
		} else if (a >= DPFW_ACT_STEER && a < DPFW_ACT_STEER + 8 && io->steer_ring[a - DPFW_ACT_STEER] != NULL) {
			unsigned w = a - DPFW_ACT_STEER;
			io->steer[w][io->n_steer[w]++] = m;
		} else {
			io->drop[io->n_drop++] = m;
		}
	}
	io->n_action = 0;
	if (io->n_tx) {
		uint16_t sent = rte_eth_tx_burst(io->tx_port, io->tx_queue, io->tx, io->n_tx);
		io->n_sent = sent;
		if (sent < io->n_tx)
			rte_pktmbuf_free_bulk(&io->tx[sent], io->n_tx - sent);
		io->n_tx = 0;
	}
	io->n_reply_sent = 0;
	if (io->n_reply) {
		uint16_t sent = rte_eth_tx_burst(io->reply_port, io->reply_queue, io->reply, io->n_reply);
		io->n_reply_sent = sent;
		if (sent < io->n_reply)
			rte_pktmbuf_free_bulk(&io->reply[sent], io->n_reply - sent);
		io->n_reply = 0;
	}
	if (io->n_drop) {
		rte_pktmbuf_free_bulk(io->drop, io->n_drop);
		io->n_drop = 0;
	}
	for (int w = 0; w < 8; w++) {
		io->n_steer_full[w] = 0;
		uint16_t n = io->n_steer[w];
		if (n == 0)
			continue;
		unsigned q = rte_ring_enqueue_burst(io->steer_ring[w], (void **)io->steer[w], n, NULL);
		if (q < n) {
			rte_pktmbuf_free_bulk(&io->steer[w][q], n - q);
			io->n_steer_full[w] = n - q;
		}
		io->n_steer[w] = 0;
	}
	/* Poll the queues round-robin, starting after the last one served,
	 * until one has packets or max_empty polls came back empty. */
	uint16_t n = 0;
	uint32_t polls = 0;
	uint16_t nq = io->n_rxq;
	io->n_rx = 0;
	if (nq == 0) {
		io->tsc = rte_rdtsc();
		return;
	}
	uint16_t q = io->cursor;
	while (polls < io->max_empty) {
		if (q >= nq)
			q = 0;
		if (io->rx_ring[q] != NULL)
			n = rte_ring_dequeue_burst(io->rx_ring[q], (void **)io->rx, DPFW_BURST, NULL);
		else
			n = rte_eth_rx_burst(io->rx_port[q], io->rx_queue[q], io->rx, DPFW_BURST);
		q++;
		if (n > 0)
			break;
		polls++;
	}
	io->empty_polls += polls;
	io->tsc = rte_rdtsc();
	io->cursor = q;
	io->rx_index = q - 1;
	io->n_rx = n;
}

void dpfw_io_flush(struct dpfw_io *io)
{
	for (uint16_t i = 0; i < io->n_action; i++)
		if (io->action[i] != DPFW_ACT_HOLD)
			rte_pktmbuf_free(io->rx[i]);
	io->n_action = 0;
	if (io->n_rel)
		rte_pktmbuf_free_bulk(io->rel, io->n_rel);
	io->n_rel = 0;
	if (io->n_tx)
		rte_pktmbuf_free_bulk(io->tx, io->n_tx);
	if (io->n_drop)
		rte_pktmbuf_free_bulk(io->drop, io->n_drop);
	for (int w = 0; w < 8; w++) {
		if (io->n_steer[w])
			rte_pktmbuf_free_bulk(io->steer[w], io->n_steer[w]);
		io->n_steer[w] = 0;
	}
	io->n_tx = io->n_drop = 0;
}

struct rte_ring *dpfw_ring_create(const char *name, unsigned count, int socket)
{
	return rte_ring_create(name, count, socket, RING_F_SC_DEQ);
}

void dpfw_ring_drain_free(struct rte_ring *r)
{
	void *objs[DPFW_BURST];
	unsigned n;
	while ((n = rte_ring_dequeue_burst(r, objs, DPFW_BURST, NULL)) > 0)
		rte_pktmbuf_free_bulk((struct rte_mbuf **)objs, n);
}

void dpfw_ring_free(struct rte_ring *r) { rte_ring_free(r); }


uint64_t dpfw_tsc_hz(void) { return rte_get_tsc_hz(); }
uint64_t dpfw_rdtsc(void) { return rte_rdtsc(); }
