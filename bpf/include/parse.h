/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* parse.h: from an skb to the facts the datapath needs about one IPv4/TCP packet. */
#ifndef PPCTL_PARSE_H
#define PPCTL_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "ppctl_abi.h"

struct packet {
	struct ppctl_ct_key key;    /* the tuple as received */
	__u32 l4_off;               /* offset of the TCP header in the skb */
	__u32 tcp_hlen;
	__u32 payload_len;          /* TCP payload bytes (from the IP total length) */
	__u32 seq;                  /* host order */
	__u32 ack;                  /* host order */
	__u8 flags;                 /* TCP_FLAG_* */
};

enum parse_result {
	PARSE_OK,
	PARSE_NOT_TCP4,             /* not ours to look at: hand it to the stack */
	PARSE_FRAGMENT,             /* an IPv4 fragment: no TCP header to trust */
	PARSE_MALFORMED,            /* IPv4/TCP with inconsistent lengths */
	PARSE_NEED_PULL,            /* IP options pushed TCP out of the linear area */
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

static __always_inline int parse_ipv4_tcp(struct __sk_buff *skb, struct packet *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr *tcp;
	__u32 ip_hlen, tot_len;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_TCP4;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return PARSE_NOT_TCP4;
	if (ip->protocol != IPPROTO_TCP)
		return PARSE_NOT_TCP4;
	if (ip->version != 4 || ip->ihl < 5)
		return PARSE_MALFORMED;
	if (ip->frag_off & bpf_htons(IPV4_FLAG_MF | IPV4_FRAG_OFFSET))
		return PARSE_FRAGMENT;

	ip_hlen = ip->ihl * 4;
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < ip_hlen + TCP_HLEN_MIN || tot_len > skb->len - ETH_HLEN)
		return PARSE_MALFORMED;

	p->l4_off = ETH_HLEN + ip_hlen;
	tcp = data + p->l4_off;
	if ((void *)(tcp + 1) > data_end)
		return PARSE_NEED_PULL;
	p->tcp_hlen = tcp->doff * 4;
	if (p->tcp_hlen < TCP_HLEN_MIN || ip_hlen + p->tcp_hlen > tot_len)
		return PARSE_MALFORMED;

	p->payload_len = tot_len - ip_hlen - p->tcp_hlen;
	p->seq = bpf_ntohl(tcp->seq);
	p->ack = bpf_ntohl(tcp->ack_seq);
	p->flags = ((__u8 *)tcp)[13];

	p->key.saddr.w[0] = ip->saddr;
	p->key.daddr.w[0] = ip->daddr;
	p->key.sport = tcp->source;
	p->key.dport = tcp->dest;
	p->key.family = PPCTL_FAMILY_IPV4;
	p->key.proto = PPCTL_PROTO_TCP;
	return PARSE_OK;
}

#endif /* PPCTL_PARSE_H */
