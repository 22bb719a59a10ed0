/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fault.bpf.c: a deterministic packet-loss and duplication injector for tests.
 * This kernel has no netem; tests attach this program at tc (ingress or egress)
 * on an interface of their lab and describe, in the fault_rules map, which TCP
 * segments to drop or duplicate: "the Nth segment of this connection in this
 * direction", "the first segment carrying payload", "the segment whose sequence
 * number is S". Counters in the rules say how often each rule matched and acted.
 * Not part of ppctl: compiled into the integration tests only.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "fault_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, FAULT_MAX_RULES);
	__type(key, __u32);
	__type(value, struct fault_rule);
} fault_rules SEC(".maps");

/* Duplicates carry this mark so the program lets them through untouched. */
#define FAULT_MARK 0xFA017

struct segment {
	__u16 sport, dport;
	__u32 seq;
	__u8 flags;
	__u32 payload_len;
};

static __always_inline int parse(struct __sk_buff *skb, struct segment *s)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct tcphdr *tcp;
	__u32 ip_hlen, l3_len;

	if ((void *)(eth + 1) > data_end)
		return -1;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		/* TCP right after the fixed header only: tests send no extensions. */
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return -1;
		ip_hlen = sizeof(*ip6);
		l3_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	} else {
		if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
		    ip->protocol != IPPROTO_TCP)
			return -1;
		ip_hlen = ip->ihl * 4;
		if (ip_hlen < 20 || ip_hlen > 60)
			return -1;
		l3_len = bpf_ntohs(ip->tot_len);
	}
	tcp = (void *)(eth + 1) + ip_hlen;
	if ((void *)(tcp + 1) > data_end)
		return -1;
	s->sport = tcp->source;
	s->dport = tcp->dest;
	s->seq = bpf_ntohl(tcp->seq);
	s->flags = ((__u8 *)tcp)[13];
	s->payload_len = l3_len - ip_hlen - tcp->doff * 4;
	return 0;
}

static __always_inline int matches(const struct fault_rule *r, const struct segment *s)
{
	if (r->sport && r->sport != s->sport)
		return 0;
	if (r->dport && r->dport != s->dport)
		return 0;
	if ((s->flags & r->flags_mask) != r->flags_value)
		return 0;
	if (r->payload == FAULT_PAYLOAD_SOME && s->payload_len == 0)
		return 0;
	if (r->payload == FAULT_PAYLOAD_NONE && s->payload_len != 0)
		return 0;
	if (r->match_seq && r->seq != s->seq)
		return 0;
	return 1;
}

struct visit {
	struct segment s;
	int verdict;
};

/* One rule: returns 1 to stop at this rule (it acted), 0 to go on. */
static long visit_rule(__u32 i, struct visit *v)
{
	struct fault_rule *r = bpf_map_lookup_elem(&fault_rules, &i);
	__u32 n;

	if (!r || r->action == FAULT_NONE || !matches(r, &v->s))
		return 0;
	n = __sync_fetch_and_add(&r->seen, 1) + 1;
	if (n < r->nth || n >= r->nth + r->times)
		return 0;
	__sync_fetch_and_add(&r->applied, 1);
	if (r->action == FAULT_DROP)
		v->verdict = TC_ACT_SHOT;
	else if (r->action == FAULT_DUPLICATE)
		v->verdict = -1;
	else if (r->action == FAULT_COUNT)
		return 0;       /* counted; later rules see it too */
	return 1;
}

static __always_inline int inject(struct __sk_buff *skb, __u64 redirect_flags)
{
	struct visit v = { .verdict = TC_ACT_OK };

	if (skb->mark == FAULT_MARK || parse(skb, &v.s))
		return TC_ACT_OK;
	bpf_loop(FAULT_MAX_RULES, visit_rule, &v, 0);
	if (v.verdict == -1) {
		/* The copy goes through this hook again, marked, and passes. */
		skb->mark = FAULT_MARK;
		bpf_clone_redirect(skb, skb->ifindex, redirect_flags);
		skb->mark = 0;
		return TC_ACT_OK;
	}
	return v.verdict;
}

SEC("tc")
int fault_ingress(struct __sk_buff *skb)
{
	return inject(skb, BPF_F_INGRESS);
}

SEC("tc")
int fault_egress(struct __sk_buff *skb)
{
	return inject(skb, 0);
}

char LICENSE[] SEC("license") = "GPL";
