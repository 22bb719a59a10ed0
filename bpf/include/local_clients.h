/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* local_clients.h: clients on the balancer host itself, at tc egress.
 *
 * The socket path (lb_sock.bpf.c) sends a local client of a PROXY service
 * straight to its backend and marks the socket (PPCTL_SOCK_HDR_AT_TC); at tc
 * egress ppctl_tc_egress (lb_tc.bpf.c) then tracks the connection with no address
 * rewritten, and its handshake ACK grows into the header segment as a remote
 * client's does. The header names the VIP the socket asked for, not the backend. */
#ifndef PPCTL_LOCAL_CLIENTS_H
#define PPCTL_LOCAL_CLIENTS_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "maps.h"
#include "sock_state_map.h"
#include "parse.h"
#include "conntrack.h"
#include "nat.h"
#include "proxy_header.h"

/* The full TCP socket that sent the packet (tc egress), or NULL: none (a forwarded
 * packet), not a full socket (a TIME_WAIT ack, a SYN-ACK), or the namespace's control
 * socket (SOCK_RAW: resets, acks for connections it has no socket for). */
static __always_inline struct bpf_sock *stream_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return NULL;
	sk = bpf_sk_fullsock(sk);
	return sk && sk->type == SOCK_STREAM ? sk : NULL;
}

/* What the socket path noted on the socket, if it owes its header at tc. */
static __always_inline struct ppctl_sock_state *header_owed_at_tc(struct bpf_sock *sk)
{
	struct ppctl_sock_state *st = bpf_sk_storage_get(&ppctl_sock_state, sk, 0, 0);

	return st && (st->flags & PPCTL_SOCK_HDR_AT_TC) ? st : NULL;
}

/* For a local client's packet (tc egress, skb->sk is its socket): the tuple its
 * header names, the packet's own with the VIP the socket asked for (the socket
 * path's connect4 sent it to the backend) in place of the backend. Returns -1 if
 * the socket is not one the socket path sent here with a header owed at tc. */
static __always_inline int local_header_tuple(struct __sk_buff *skb, const struct packet *p,
					      struct ppctl_ct_key *tuple,
					      struct ppctl_sock_state **state)
{
	struct bpf_sock *sk = stream_socket(skb);
	struct ppctl_sock_state *st = sk ? header_owed_at_tc(sk) : NULL;

	if (!st || st->family != p->key.family)
		return -1;
	*tuple = p->key;
	tuple->daddr = st->vip;
	tuple->dport = st->vport;
	if (state)
		*state = st;
	return 0;
}

/* At tc egress, before any parsing: is the packet from a TCP socket of this host
 * that owes no header at tc? Then it is none of ppctl's (most local traffic, the
 * local clients of plain services included: connect4 sent them to their backend and
 * nothing is tracked), and one socket-storage read says so where a conntrack lookup
 * used to (a miss in the big table: about a third of the program's time). What a
 * socket did not send itself (stream_socket() is NULL) goes on to the lookup by
 * tuple. */
static __always_inline int from_untracked_socket(struct __sk_buff *skb)
{
	struct bpf_sock *sk = stream_socket(skb);

	return sk && !header_owed_at_tc(sk);
}

/*
 * A local client's SYN to a PROXY service's backend (the socket path sent it
 * there and owes the header at tc): two entries with no address rewrite, the
 * same sequence state as a remote client's. Its handshake ACK then grows into the
 * header segment in to_backend, exactly as a remote client's does.
 */
__noinline int new_local_connection(struct __sk_buff *skb, struct packet *p,
				    struct ppctl_stats *stats, __u64 now)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	struct ppctl_sock_state *st = NULL;
	struct ppctl_ct_entry *fwd, *rev;
	struct ppctl_ct_key rkey;

	if (!skb || !p || !scratch)
		return TC_ACT_OK;
	if (local_header_tuple(skb, p, &scratch->tuple, &st) || !st)
		return TC_ACT_OK;       /* not a socket the socket path handed to tc */
	fwd = &scratch->fwd;
	rev = &scratch->rev;
	__builtin_memset(fwd, 0, sizeof(*fwd));

	fwd->nat_saddr = p->key.saddr;
	fwd->nat_daddr = p->key.daddr;
	fwd->nat_sport = p->key.sport;
	fwd->nat_dport = p->key.dport;
	fwd->dir = PPCTL_DIR_ORIGINAL;
	fwd->dir_flags = PPCTL_CT_L_LOCAL;
	fwd->family = p->key.family;
	fwd->client_isn = p->seq;
	fwd->snd_end = p->seq + 1;
	fwd->hdr_flags = st->hdr_flags;
	fwd->unique_id = st->unique_id;
	fwd->service_id = st->service_id;
	fwd->backend_id = st->backend_id;
	fwd->created_ns = now;
	fwd->last_seen_ns = now;
	fwd->hdr_len = proxy_header_build(scratch, &scratch->tuple, fwd->hdr_flags,
					  fwd->service_id, fwd->unique_id);
	if (!fwd->hdr_len) {
		count_fwd_drop(stats, dropped_header_error);
		return TC_ACT_SHOT;     /* the client sends its SYN again */
	}

	fwd->packets = 1;           /* this SYN */
	fwd->bytes = skb->len;
	*rev = *fwd;
	rev->snd_end = 0;           /* the backend's: from its SYN-ACK */
	rev->packets = 0;
	rev->bytes = 0;
	rev->nat_saddr = p->key.daddr;
	rev->nat_daddr = p->key.saddr;
	rev->nat_sport = p->key.dport;
	rev->nat_dport = p->key.sport;
	rev->dir = PPCTL_DIR_REPLY;

	ct_peer_key(fwd, &rkey);
	if (bpf_map_update_elem(&ppctl_conntrack, &rkey, rev, BPF_ANY))
		goto table_full;
	if (bpf_map_update_elem(&ppctl_conntrack, &p->key, fwd, BPF_NOEXIST)) {
		bpf_map_delete_elem(&ppctl_conntrack, &rkey);
		goto table_full;
	}
	gc_arm();
	if (stats) {
		stats->connections++;
		stats->packets_to_backend++;
		stats->bytes_to_backend += skb->len;
	}
	if (p->payload_len && trim_syn_payload(skb, p, fwd, stats)) {
		count_fwd_drop(stats, dropped_rewrite_error);
		return TC_ACT_SHOT;     /* the client sends its SYN again */
	}
	return TC_ACT_OK;
table_full:
	/* The SYN goes on untracked: sockops then finds no entry and the socket path
	 * writes the header in front of the first send instead. */
	if (stats)
		stats->passed_local_untracked++;
	return TC_ACT_OK;
}

#endif /* PPCTL_LOCAL_CLIENTS_H */
