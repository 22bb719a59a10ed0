/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parse.h: from an skb to the facts the datapath needs about one TCP segment over
 * IPv4 or IPv6. */
#ifndef PPCTL_PARSE_H
#define PPCTL_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "ppctl_abi.h"

struct packet {
	struct ppctl_ct_key key;    /* the tuple as received */
	__u32 l4_off;               /* offset of the TCP header in the skb */
	__u32 tcp_hlen;
	__u32 payload_len;          /* TCP payload bytes (from the IP length fields) */
	__u32 seq;                  /* host order */
	__u32 ack;                  /* host order */
	__u8 flags;                 /* TCPF_* */
};

enum parse_result {
	PARSE_OK,
	PARSE_NOT_TCP,              /* not ours to look at: hand it to the stack */
	PARSE_FRAGMENT,             /* a fragment: no TCP header to trust */
	PARSE_MALFORMED,            /* IP/TCP with inconsistent lengths */
	PARSE_NEED_PULL,            /* IP options or extension headers pushed TCP out
				     * of the linear area */
};

/* Makes sure the Ethernet, IPv4 and base TCP headers sit in the linear part of the
 * skb. Locally generated TCP always has them there, so this is nearly free; pulling
 * more than needed would copy payload out of the fragments of every GSO packet. */
static __always_inline void pull_headers(struct __sk_buff *skb)
{
	__u32 want = ETH_HLEN + IPV4_HLEN_MIN + TCP_HLEN_MIN;
	__u32 linear = skb->data_end - skb->data;

	if (linear >= want || linear >= skb->len)
		return;
	bpf_skb_pull_data(skb, skb->len < want ? skb->len : want);
}

/* The TCP part, once the IP layer said where it starts and how long the IP
 * datagram is (l3_len: header(s) plus payload, from the IP length fields). */
static __always_inline int parse_tcp(struct __sk_buff *skb, struct packet *p, __u32 l3_len)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 l3_hlen = p->l4_off - ETH_HLEN;
	struct tcphdr *tcp;

	if (p->l4_off > ETH_HLEN + IPV6_HLEN_MAX)
		return PARSE_NOT_TCP;
	tcp = data + (p->l4_off & L4_OFF_MASK);
	if ((void *)(tcp + 1) > data_end)
		return PARSE_NEED_PULL;
	p->tcp_hlen = tcp->doff * 4;
	if (p->tcp_hlen < TCP_HLEN_MIN || l3_hlen + p->tcp_hlen > l3_len)
		return PARSE_MALFORMED;

	p->payload_len = l3_len - l3_hlen - p->tcp_hlen;
	p->seq = bpf_ntohl(tcp->seq);
	p->ack = bpf_ntohl(tcp->ack_seq);
	p->flags = ((__u8 *)tcp)[TCP_FLAGS_OFF];
	p->key.sport = tcp->source;
	p->key.dport = tcp->dest;
	p->key.proto = PPCTL_PROTO_TCP;
	return PARSE_OK;
}

static __always_inline int parse_ipv4(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	__u32 ip_hlen, tot_len;

	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return PARSE_NOT_TCP;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(IPV4_FLAG_MF | IPV4_FRAG_OFFSET))
		return PARSE_FRAGMENT;
	ip_hlen = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ip_hlen + TCP_HLEN_MIN || tot_len > skb->len - ETH_HLEN)
		return PARSE_MALFORMED;

	p->key.saddr.w[0] = ip->saddr;
	p->key.daddr.w[0] = ip->daddr;
	p->key.family = PPCTL_FAMILY_IPV4;
	p->l4_off = ETH_HLEN + ip_hlen;
	return parse_tcp(skb, p, tot_len);
}

/* IPv6 with the extension headers that carry no payload of their own (hop-by-hop,
 * routing, destination options) skipped; a fragment header, or anything else,
 * leaves the packet to the stack. */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + ETH_HLEN;
	__u32 off = ETH_HLEN + IPV6_HLEN, tot_len, i;
	__u8 next;

	if ((void *)(ip6 + 1) > data_end)
		return PARSE_NOT_TCP;
	if (ip6->version != 6)
		return PARSE_MALFORMED;
	tot_len = IPV6_HLEN + bpf_ntohs(ip6->payload_len);
	if (tot_len > skb->len - ETH_HLEN)
		return PARSE_MALFORMED;
	next = ip6->nexthdr;

	for (i = 0; i < IPV6_MAX_EXT_HEADERS; i++) {
		__u8 *ext;

		if (next == IPPROTO_TCP)
			break;
		if (next == IPV6_EXT_FRAGMENT)
			return PARSE_FRAGMENT;
		if (next != IPV6_EXT_HOPOPTS && next != IPV6_EXT_ROUTING &&
		    next != IPV6_EXT_DSTOPTS)
			return PARSE_NOT_TCP;
		if (off > ETH_HLEN + IPV6_HLEN_MAX - 8)
			return PARSE_NOT_TCP;
		ext = data + off;
		if ((void *)(ext + 2) > data_end)
			return PARSE_NEED_PULL;
		next = ext[0];
		off += (ext[1] + 1) * 8;
	}
	if (next != IPPROTO_TCP || off > ETH_HLEN + IPV6_HLEN_MAX)
		return PARSE_NOT_TCP;

	__builtin_memcpy(&p->key.saddr, &ip6->saddr, 16);
	__builtin_memcpy(&p->key.daddr, &ip6->daddr, 16);
	p->key.family = PPCTL_FAMILY_IPV6;
	p->l4_off = off;
	return parse_tcp(skb, p, tot_len);
}

static __always_inline int parse_packet(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_TCP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(skb, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(skb, p);
	return PARSE_NOT_TCP;
}

#endif /* PPCTL_PARSE_H */
