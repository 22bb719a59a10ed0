/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* nat.h: rewriting a packet for its connection and finding where it goes;
 * rebuilding a segment whose payload changed (the header segment, a trimmed
 * TFO SYN); and SNAT, the choice of the balancer's address and port towards the
 * backend for a new connection. */
#ifndef PPCTL_NAT_H
#define PPCTL_NAT_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "csum.h"
#include "parse.h"
#include "maps.h"
#include "conntrack.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

static __always_inline int addr_eq(const struct ppctl_addr *a, const struct ppctl_addr *b)
{
	return ((a->w[0] ^ b->w[0]) | (a->w[1] ^ b->w[1]) | (a->w[2] ^ b->w[2]) | (a->w[3] ^ b->w[3])) == 0;
}

/* Checksum diff of replacing one address by another (4 or 16 bytes). */
static __always_inline __u32 addr_diff(const struct ppctl_addr *from, const struct ppctl_addr *to,
				       __u8 family)
{
	__u32 diff = csum_diff32(from->w[0], to->w[0]);

	if (family == PPCTL_FAMILY_IPV6) {
		diff = csum_add(diff, csum_diff32(from->w[1], to->w[1]));
		diff = csum_add(diff, csum_diff32(from->w[2], to->w[2]));
		diff = csum_add(diff, csum_diff32(from->w[3], to->w[3]));
	}
	return diff;
}

/* Rewrites the IP addresses of the packet to the entry's, and the IP length if
 * new_l3_len is not 0. The diffs are taken from what the packet holds now, so a
 * packet rewritten once (a clone's original) can be rewritten again. Returns the
 * pseudo-header checksum diff of the address change, or -1 if the headers are
 * not there. (A length change is left to the caller: only finish_segment makes
 * one, and it computes the TCP checksum afresh.) */
static __always_inline __s64 rewrite_ip(struct __sk_buff *skb, const struct packet *p,
					const struct ppctl_ct_entry *e, __u32 new_l3_len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ppctl_addr old_s = {}, old_d = {};
	__u32 diff;

	if (p->key.family == PPCTL_FAMILY_IPV4) {
		struct iphdr *ip = data + ETH_HLEN;
		__u32 ip_diff;

		if ((void *)(ip + 1) > data_end)
			return -1;
		old_s.w[0] = ip->saddr;
		old_d.w[0] = ip->daddr;
		diff = csum_add(addr_diff(&old_s, &e->nat_saddr, PPCTL_FAMILY_IPV4),
				addr_diff(&old_d, &e->nat_daddr, PPCTL_FAMILY_IPV4));
		ip_diff = diff;
		ip->saddr = e->nat_saddr.w[0];
		ip->daddr = e->nat_daddr.w[0];
		if (new_l3_len) {
			__u16 new_len = bpf_htons(new_l3_len);

			ip_diff = csum_add(ip_diff, csum_diff32(ip->tot_len, new_len));
			ip->tot_len = new_len;
		}
		ip->check = csum_apply_diff(ip->check, ip_diff);
	} else {
		struct ipv6hdr *ip6 = data + ETH_HLEN;

		if ((void *)(ip6 + 1) > data_end)
			return -1;
		__builtin_memcpy(&old_s, &ip6->saddr, 16);
		__builtin_memcpy(&old_d, &ip6->daddr, 16);
		diff = csum_add(addr_diff(&old_s, &e->nat_saddr, PPCTL_FAMILY_IPV6),
				addr_diff(&old_d, &e->nat_daddr, PPCTL_FAMILY_IPV6));
		__builtin_memcpy(&ip6->saddr, &e->nat_saddr, 16);
		__builtin_memcpy(&ip6->daddr, &e->nat_daddr, 16);
		if (new_l3_len)
			ip6->payload_len = bpf_htons(new_l3_len - IPV6_HLEN);
	}
	return diff;
}

/* The next hop's MACs, when the forwarding decision is cached. */
static __always_inline void rewrite_macs(struct ethhdr *eth, const struct ppctl_ct_entry *e)
{
	if (e->dir_flags & PPCTL_CT_L_FWD_CACHED) {
		__builtin_memcpy(eth->h_source, e->smac, ETH_ALEN);
		__builtin_memcpy(eth->h_dest, e->dmac, ETH_ALEN);
	}
}

/* Rewrites MACs (when the forwarding decision is cached), addresses, ports,
 * sequence and ack numbers of the packet in one pass, and fixes the checksums.
 * `extra_diff` is the checksum diff of changes already made to the TCP header
 * (SACK blocks). Returns 0 or a negative error. */
static __always_inline int rewrite_packet(struct __sk_buff *skb, const struct packet *p,
					  const struct ppctl_ct_entry *e,
					  __u32 seq, __u32 ack, __u32 extra_diff)
{
	void *data, *data_end;
	struct ethhdr *eth;
	struct tcphdr *tcp;
	__u32 l4_diff, old_ports, new_ports;
	__u16 ports[2] = { e->nat_sport, e->nat_dport };
	__u32 ip_summed = skb_ip_summed(skb);
	__s64 pseudo_diff;

	pseudo_diff = rewrite_ip(skb, p, e, 0);
	if (pseudo_diff < 0)
		return -1;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	tcp = data + (p->l4_off & L4_OFF_MASK);
	if ((void *)(eth + 1) > data_end || (void *)(tcp + 1) > data_end)
		return -1;
	rewrite_macs(eth, e);

	__builtin_memcpy(&old_ports, &tcp->source, 4);
	__builtin_memcpy(&new_ports, ports, 4);
	__builtin_memcpy(&tcp->source, ports, 4);
	l4_diff = csum_add(extra_diff, csum_diff32(old_ports, new_ports));
	seq = bpf_htonl(seq);
	ack = bpf_htonl(ack);
	if (tcp->seq != seq) {
		l4_diff = csum_add(l4_diff, csum_diff32(tcp->seq, seq));
		tcp->seq = seq;
	}
	if (tcp->ack_seq != ack) {
		l4_diff = csum_add(l4_diff, csum_diff32(tcp->ack_seq, ack));
		tcp->ack_seq = ack;
	}

	if (ip_summed != PPCTL_CHECKSUM_COMPLETE) {
		tcp->check = csum_tcp_update(tcp->check, ip_summed, (__u32)pseudo_diff, l4_diff);
		return 0;
	}
	/* skb->csum covers the packet and must follow the change: the helpers. */
	if (bpf_l4_csum_replace(skb, p->l4_off + TCP_CSUM_OFF, 0, (__u32)pseudo_diff,
				BPF_F_PSEUDO_HDR))
		return -1;
	if (bpf_l4_csum_replace(skb, p->l4_off + TCP_CSUM_OFF, 0, l4_diff, 0))
		return -1;
	return 0;
}

/* Sends a rewritten packet on its way; a redirect the helper refuses is counted
 * (dropped_redirect_error). */
static __always_inline int forward(const struct ppctl_ct_entry *e, struct ppctl_stats *stats)
{
	long rc;

	if (e->dir_flags & PPCTL_CT_L_LOCAL)
		return TC_ACT_OK;       /* a local socket's: on through egress, or up the stack */
	if (e->dir_flags & PPCTL_CT_L_PEER)
		rc = bpf_redirect_peer(e->ifindex, 0);
	else if (e->dir_flags & PPCTL_CT_L_FWD_CACHED)
		rc = bpf_redirect(e->ifindex, 0);
	else if (e->ifindex)
		rc = bpf_redirect_neigh(e->ifindex, NULL, 0, 0);
	else
		return TC_ACT_OK;       /* the stack routes it */
	if (rc == TC_ACT_SHOT)
		count_fwd_drop(stats, dropped_redirect_error);
	return rc;
}

/* How to leave through an interface: PPCTL_CT_L_PEER for attached veths. */
static __always_inline __u8 egress_flags(__u32 ifindex)
{
	struct ppctl_iface *iface = bpf_map_lookup_elem(&ppctl_ifaces, &ifindex);

	return iface && (iface->flags & PPCTL_IFACE_PEER) ? PPCTL_CT_L_PEER : 0;
}

/* Looks up the route towards e->nat_daddr and caches the egress interface and
 * MACs in the entry. With want_src, also returns the preferred source address of
 * that route (the SNAT address of a new connection). Returns 0 when a route was
 * found (the MACs may still be unknown: no neighbour entry yet). */
static __always_inline int route_entry(struct __sk_buff *skb, struct ppctl_ct_entry *e,
				       struct ppctl_addr *src, int want_src)
{
	struct bpf_fib_lookup fib = {};
	long rc;

	fib.l4_protocol = IPPROTO_TCP;
	fib.sport = e->nat_sport;
	fib.dport = e->nat_dport;
	fib.ifindex = skb->ingress_ifindex;
	if (e->family == PPCTL_FAMILY_IPV4) {
		fib.family = AF_INET;
		fib.ipv4_src = want_src ? 0 : e->nat_saddr.w[0];
		fib.ipv4_dst = e->nat_daddr.w[0];
	} else {
		fib.family = AF_INET6;
		if (!want_src)
			__builtin_memcpy(fib.ipv6_src, &e->nat_saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &e->nat_daddr, 16);
	}

	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), want_src ? BPF_FIB_LOOKUP_SRC : 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return -1;
	if (src) {
		__builtin_memset(src, 0, sizeof(*src));
		if (e->family == PPCTL_FAMILY_IPV4)
			src->w[0] = fib.ipv4_src;
		else
			__builtin_memcpy(src, fib.ipv6_src, 16);
	}
	e->ifindex = fib.ifindex;
	if (rc == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(e->smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(e->dmac, fib.dmac, ETH_ALEN);
		e->dir_flags |= PPCTL_CT_L_FWD_CACHED | egress_flags(e->ifindex);
	}
	return 0;
}

/* MARK: - Rebuilding a segment */

/* Finishes a segment whose payload was just replaced by `payload` (len bytes,
 * zero-padded to a multiple of 4 in its buffer): addresses and ports from the
 * entry, seq, IP length, and the TCP checksum computed afresh. Works whether the
 * skb carries a full TCP checksum or only the pseudo-header sum
 * (CHECKSUM_PARTIAL): the field is set to the pseudo-header sum P, and the rest is
 * added with a non-pseudo diff, which the kernel applies only to full checksums.
 * The diff is P + sum(TCP header) + sum(payload) + P: applied to a field holding
 * P it yields the full checksum (docs/datapath.md, "Checksums"). */
static __always_inline int finish_segment(struct __sk_buff *skb, const struct packet *p,
					  const struct ppctl_ct_entry *e, __u32 seq,
					  const __u8 *payload, __u32 len, __u8 clear_flags)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	__u32 tcp_hlen = p->tcp_hlen, l3_hlen = p->l4_off - ETH_HLEN;
	__u16 ports[2] = { e->nat_sport, e->nat_dport };
	__u32 sum;
	__u16 pseudo_sum;
	void *data, *data_end;
	struct ethhdr *eth;
	struct tcphdr *tcp;
	__s64 part;

	if (!scratch || tcp_hlen < TCP_HLEN_MIN || tcp_hlen > TCP_HLEN_MAX ||
	    len > PPCTL_MAX_HEADER_LEN || p->l4_off > ETH_HLEN + IPV6_HLEN_MAX)
		return -1;
	if (rewrite_ip(skb, p, e, l3_hlen + tcp_hlen + len) < 0)
		return -1;

	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	tcp = data + (p->l4_off & L4_OFF_MASK);
	if ((void *)(eth + 1) > data_end || (void *)(tcp + 1) > data_end)
		return -1;
	rewrite_macs(eth, e);
	__builtin_memcpy(&tcp->source, ports, 4);
	tcp->seq = bpf_htonl(seq);
	((__u8 *)tcp)[TCP_FLAGS_OFF] = (((__u8 *)tcp)[TCP_FLAGS_OFF] & ~clear_flags) | (len ? TCPF_PSH : 0);
	tcp->check = 0;

	/* Pseudo header: the addresses, then the TCP length and protocol. IPv4's
	 * 12-byte layout (addr, addr, zero, proto, len16) sums the same as this
	 * 40-byte one with 4-byte addresses and zeros in between. */
	__builtin_memset(&scratch->pseudo, 0, sizeof(scratch->pseudo));
	scratch->pseudo.saddr = e->nat_saddr;
	scratch->pseudo.daddr = e->nat_daddr;
	scratch->pseudo.len = bpf_htonl(tcp_hlen + len);
	scratch->pseudo.proto = IPPROTO_TCP;
	part = bpf_csum_diff(NULL, 0, (__be32 *)&scratch->pseudo, sizeof(scratch->pseudo), 0);
	if (part < 0)
		return -1;
	sum = (__u32)part;
	pseudo_sum = csum_fold_nocomp(sum);

	if (bpf_skb_load_bytes(skb, p->l4_off, scratch->tcp, tcp_hlen))
		return -1;
	part = bpf_csum_diff(NULL, 0, (__be32 *)scratch->tcp, tcp_hlen, 0);
	if (part < 0)
		return -1;
	sum = csum_add(sum, (__u32)part);
	if (len) {
		__u32 padded = (len + 3) & ~3u;
		if (padded > PPCTL_MAX_HEADER_LEN)
			return -1;
		part = bpf_csum_diff(NULL, 0, (__be32 *)payload, padded, 0);
		if (part < 0)
			return -1;
		sum = csum_add(sum, (__u32)part);
	}

	if (bpf_skb_store_bytes(skb, p->l4_off + TCP_CSUM_OFF, &pseudo_sum, 2, 0))
		return -1;
	return bpf_l4_csum_replace(skb, p->l4_off + TCP_CSUM_OFF, 0,
				   csum_add(sum, pseudo_sum), 0) ? -1 : 0;
}

/* Removes data carried on a SYN (TCP Fast Open). The backend's SYN-ACK then acks
 * only the SYN and the client sends the data again after the handshake, behind
 * the header. */
static __noinline int trim_syn_payload(struct __sk_buff *skb, struct packet *p,
					    const struct ppctl_ct_entry *e, struct ppctl_stats *stats)
{
	if (bpf_skb_change_tail(skb, p->l4_off + p->tcp_hlen, 0))
		return -1;
	if (finish_segment(skb, p, e, p->seq, NULL, 0, 0))
		return -1;
	p->payload_len = 0;
	if (stats)
		stats->tfo_trimmed++;
	return 0;
}

/* MARK: - SNAT: the balancer's tuple towards the backend */

/* The SNAT pool a new connection of `svc` draws from: its own, else the
 * instance's default, else none (the route's source address). */
static __always_inline struct ppctl_snat_pool *snat_pool(const struct ppctl_service *svc)
{
	__u32 key = (svc->flags & PPCTL_SVC_SNAT_POOL) ? svc->id : PPCTL_SNAT_POOL_DEFAULT;
	struct ppctl_snat_pool *pool = bpf_map_lookup_elem(&ppctl_snat_pools, &key);

	return pool && pool->count ? pool : NULL;
}

static __always_inline __u32 snat_port_seed(const struct packet *p)
{
	__u32 h = (p->key.saddr.w[0] ^ p->key.saddr.w[3]) * 0x9E3779B1u;

	return (h ^ (h >> 16)) + bpf_ntohs(p->key.sport);
}

/* Is `addr` one the connection may leave from: the pool's, or the route's source
 * when there is no pool? */
static __always_inline int snat_addr_ok(const struct ppctl_snat_pool *pool, __u32 count,
					const struct ppctl_addr *addr,
					const struct ppctl_addr *route_src)
{
	__u32 i;

	if (!pool)
		return addr_eq(addr, route_src);
	for (i = 0; i < PPCTL_MAX_SNAT_ADDRS; i++) {
		if (i >= count)
			break;
		if (addr_eq(addr, &pool->addr[i]))
			return 1;
	}
	return 0;
}

/*
 * Finds a SNAT tuple (address, port) towards the backend for the connection being
 * built in the scratch space (fwd, rev), and inserts the REPLY entry under it
 * (its key left in scratch->tuple); fwd gets the address and port. The candidates, in order: the
 * client's previous tuple (hint); the client's own port on each pool address (as
 * netfilter's masquerade keeps it); then ports spread over the range by a hash of
 * the client's address and port. A tuple is taken only if no connection holds it,
 * or the one that does is over and left no TIME_WAIT at the backend
 * (ct_is_reclaimable): a backend never sees a stranger's SYN on a tuple it holds
 * in TIME_WAIT. On the route's own source address (no pool) the namespace's
 * ephemeral ports stay free for the host's sockets. Returns 0, SNAT_EXHAUSTED or
 * SNAT_TABLE_FULL. (docs/datapath.md, "SNAT and TIME_WAIT".)
 */
#define SNAT_EXHAUSTED  1
#define SNAT_TABLE_FULL 2

/* Inserts the REPLY entry `rev` under the candidate tuple `rkey` if no connection
 * holds it, or the one that does can give it up. Returns 0, SNAT_EXHAUSTED (taken)
 * or SNAT_TABLE_FULL. */
__noinline int snat_claim(struct ppctl_ct_key *rkey, struct ppctl_ct_entry *rev, __u64 now)
{
	struct ppctl_config *cfg = config_get();
	struct ppctl_ct_entry *old;
	long rc;

	if (!rkey || !rev || !cfg)
		return SNAT_TABLE_FULL;
	rc = bpf_map_update_elem(&ppctl_conntrack, rkey, rev, BPF_NOEXIST);
	if (rc == 0)
		return 0;
	if (rc == -ERRNO_E2BIG)
		return SNAT_TABLE_FULL;
	old = bpf_map_lookup_elem(&ppctl_conntrack, rkey);
	if (!old || !ct_is_reclaimable(cfg, old, now))
		return SNAT_EXHAUSTED;
	ct_delete_connection(rkey, old);
	return bpf_map_update_elem(&ppctl_conntrack, rkey, rev, BPF_NOEXIST) ? SNAT_EXHAUSTED : 0;
}

static __always_inline int snat_alloc(struct packet *p, struct ppctl_snat_pool *pool,
				      struct snat_hint *hint, __u64 now)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	struct ppctl_config *cfg = config_get();
	struct ppctl_ct_entry *fwd, *rev;
	struct ppctl_ct_key *rkey;
	const struct ppctl_addr *route_src;
	__u32 lo, hi, range, count = 1, seed, client_port, port, i;
	int rc;

	if (!p || !scratch || !cfg)
		return SNAT_TABLE_FULL;
	fwd = &scratch->fwd;
	rev = &scratch->rev;
	rkey = &scratch->tuple;
	lo = cfg->snat_port_min;
	hi = cfg->snat_port_max;
	if (lo == 0 || hi < lo) {
		lo = PPCTL_DEFAULT_SNAT_PORT_MIN;
		hi = PPCTL_DEFAULT_SNAT_PORT_MAX;
	}
	range = hi - lo + 1;
	if (pool && pool->count) {
		count = pool->count < PPCTL_MAX_SNAT_ADDRS ? pool->count : PPCTL_MAX_SNAT_ADDRS;
	} else {
		pool = NULL;
	}
	route_src = &fwd->nat_saddr;   /* stays until a tuple is found */
	seed = snat_port_seed(p);
	client_port = bpf_ntohs(p->key.sport);

	__builtin_memset(rkey, 0, sizeof(*rkey));
	rkey->saddr = fwd->nat_daddr;
	rkey->sport = fwd->nat_dport;
	rkey->family = fwd->family;
	rkey->proto = PPCTL_PROTO_TCP;

	for (i = 0; i < SNAT_PORT_TRIES; i++) {
		if (i == 0 && hint && hint->port && hint->backend_id == fwd->backend_id &&
		    snat_addr_ok(pool, count, &hint->addr, route_src)) {
			rkey->daddr = hint->addr;
			rkey->dport = hint->port;
		} else {
			/* Round r = i / count tries one port on every address: the
			 * client's own in round 0, a hashed one after. */
			__u32 round = i / count;

			rkey->daddr = pool ? pool->addr[((seed >> 16) + i) % count & (PPCTL_MAX_SNAT_ADDRS - 1)]
					   : *route_src;
			port = round == 0 ? client_port : lo + (seed + round * 0x9E3779B1u) % range;
			if (port < lo || port > hi ||
			    (!pool && port >= cfg->local_port_min && port <= cfg->local_port_max))
				continue;
			rkey->dport = bpf_htons(port);
		}
		rc = snat_claim(rkey, rev, now);
		if (rc == 0)
			goto found;
		if (rc == SNAT_TABLE_FULL)
			return rc;
	}
	return SNAT_EXHAUSTED;
found:
	fwd->nat_saddr = rkey->daddr;
	fwd->nat_sport = rkey->dport;
	return 0;
}

/* Keeps the SNAT tuple of a connection a SYN is about to replace (see struct
 * snat_hint), for open_connection; `reused` tells it the hint is this SYN's. */
static __noinline void snat_remember(const struct ppctl_ct_entry *e)
{
	__u32 zero = 0;
	struct snat_hint *hint = bpf_map_lookup_elem(&ppctl_hint, &zero);

	if (!hint)
		return;
	hint->addr = e->nat_saddr;
	hint->port = e->nat_sport;
	hint->backend_id = e->backend_id;
}

#endif /* PPCTL_NAT_H */
