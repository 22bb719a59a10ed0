/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* nat.h: rewriting a packet for its connection, and finding where it goes. */
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

#endif /* PPCTL_NAT_H */
