/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * lb_sock.bpf.c: ppctl for processes on the balancer host itself. Their
 * connections never cross a tc ingress hook; they are balanced where the socket
 * is made, and the PROXY header is written as the client's own first bytes, so
 * that no sequence number is ever translated.
 *
 *   connect()      [cgroup/connect4|6] VIP:port is a service: pick a backend by
 *                  the same ring as the tc path, connect there instead, and note
 *                  the VIP in the socket's storage.
 *   SYN            [tc egress, lb_tc.bpf.c] where tc is attached on the way to
 *                  the backend, the header rides on the handshake ACK, like a
 *                  remote client's: nothing waits for the client to speak, so a
 *                  backend that speaks first (an SMTP banner) gets it too.
 *   established    [sockops] if no tc egress saw the SYN, a socket that owes a
 *                  header joins ppctl_sockhash, so that the sk_msg program sees
 *                  its sends (the fallback).
 *   first send     [sk_msg] push the header in front of the client's bytes (one
 *                  segment, header first).
 *   first ack      [sockops, RTT callback] the socket leaves the sockhash and
 *                  asks for no more callbacks: later sends and acks run no
 *                  program at all.
 *   getpeername()  [cgroup/getpeername4|6] reports the VIP, not the backend.
 *
 * docs/datapath.md, "Local clients", explains both ways and when each is taken.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "service_maps.h"
#include "ct_map.h"
#include "sock_maps.h"
#include "proxy_header.h"

#define ECONNREFUSED   111
#define AF_INET        2
#define AF_INET6       10

/* Return values of cgroup sock_addr and sockops programs. */
#define CGROUP_ALLOW   1
#define CGROUP_DENY    0

static __always_inline struct ppctl_sock_stats *sock_stats(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ppctl_sock_stats, &zero);
}

/* True if the socket lives in the network namespace this instance serves. */
static __always_inline int in_our_netns(struct bpf_sock_addr *ctx)
{
	__u32 zero = 0;
	struct ppctl_sock_config *cfg = bpf_map_lookup_elem(&ppctl_sock_config, &zero);

	return cfg && cfg->netns_cookie && cfg->netns_cookie == bpf_get_netns_cookie(ctx);
}

/* MARK: - connect() */

/* The flow hash of a local client's connection: the tc path's (flow_hash), over the
 * tuple as far as it exists at connect(): the socket's source address and port if
 * it was bound (else 0 and a random port: the kernel picks them after this program).
 * A bound socket gets the choice a remote client with its tuple would get. */
static __always_inline __u32 socket_flow_hash(struct bpf_sock_addr *ctx,
					      const struct ppctl_service_key *key)
{
	struct ppctl_config *cfg = config_get();
	struct ppctl_ct_key tuple = {};
	struct bpf_sock *sk = ctx->sk;
	__u32 sport = 0;

	if (sk) {
		if (key->family == PPCTL_FAMILY_IPV4) {
			tuple.saddr.w[0] = sk->src_ip4;
		} else {
			tuple.saddr.w[0] = sk->src_ip6[0];
			tuple.saddr.w[1] = sk->src_ip6[1];
			tuple.saddr.w[2] = sk->src_ip6[2];
			tuple.saddr.w[3] = sk->src_ip6[3];
		}
		sport = sk->src_port;           /* host order; 0 until bound */
	}
	if (!sport)
		sport = bpf_get_prandom_u32() & 0xffff;
	tuple.daddr = key->vip;
	tuple.sport = bpf_htons((__u16)sport);
	tuple.dport = key->port;
	tuple.family = key->family;
	tuple.proto = key->proto;
	return flow_hash(&tuple, cfg ? cfg->hash_seed : 0);
}

/* Shared by connect4 and connect6: `key` is what the client asked for. Returns the
 * backend to connect to, or NULL to leave the socket alone; *refuse is set when
 * the connect must fail (a service without a usable backend). */
static __always_inline struct ppctl_backend *balance(struct bpf_sock_addr *ctx,
						     const struct ppctl_service_key *key,
						     int *refuse)
{
	struct ppctl_sock_stats *stats = sock_stats();
	struct ppctl_sock_state *st;
	struct ppctl_service *svc;
	struct ppctl_backend *be;
	__u32 backend_id;

	*refuse = 0;
	if (ctx->type != SOCK_STREAM || !in_our_netns(ctx))
		return NULL;
	svc = bpf_map_lookup_elem(&ppctl_services, key);
	if (!svc) {
		/* A socket may connect again after a failed attempt: what an earlier
		 * connect to a service noted must not outlive it. */
		bpf_sk_storage_delete(&ppctl_sock_state, ctx->sk);
		return NULL;
	}
	be = pick_backend(svc, socket_flow_hash(ctx, key), key->family, &backend_id);
	if (!be)
		goto refuse;
	st = bpf_sk_storage_get(&ppctl_sock_state, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		goto refuse;
	__builtin_memset(st, 0, sizeof(*st));
	st->vip = key->vip;
	st->vport = key->port;
	st->family = key->family;
	st->service_id = svc->id;
	st->backend_id = backend_id;
	st->hdr_flags = header_flags(svc->flags);
	/* Every header service: at tc egress if a ppctl_tc_egress sees the SYN, else
	 * (sockops finds no conntrack entry) in front of the first send. Whether the
	 * protocol is server-first does not matter (PPCTL_SVC_SERVER_FIRST is kept
	 * for the control plane only). */
	if (st->hdr_flags & (PPCTL_SVC_PROXY_V1 | PPCTL_SVC_PROXY_V2))
		st->flags = PPCTL_SOCK_HDR_AT_TC;
	st->unique_id = new_unique_id(st->hdr_flags);
	if (stats)
		stats->connects++;
	return be;
refuse:
	if (stats)
		stats->refused_no_backend++;
	*refuse = 1;
	return NULL;
}

/* The address in a sock_addr context, as ppctl stores addresses, and back. The
 * family is a constant at every call: the other branch is compiled out (a
 * connect4 program may not touch user_ip6). */
static __always_inline void get_user_addr(struct bpf_sock_addr *ctx, __u8 family,
					  struct ppctl_addr *a)
{
	if (family == PPCTL_FAMILY_IPV4) {
		a->w[0] = ctx->user_ip4;
	} else {
		a->w[0] = ctx->user_ip6[0];
		a->w[1] = ctx->user_ip6[1];
		a->w[2] = ctx->user_ip6[2];
		a->w[3] = ctx->user_ip6[3];
	}
}

static __always_inline void set_user_addr(struct bpf_sock_addr *ctx, __u8 family,
					  const struct ppctl_addr *a, __u16 port)
{
	if (family == PPCTL_FAMILY_IPV4) {
		ctx->user_ip4 = a->w[0];
	} else {
		ctx->user_ip6[0] = a->w[0];
		ctx->user_ip6[1] = a->w[1];
		ctx->user_ip6[2] = a->w[2];
		ctx->user_ip6[3] = a->w[3];
	}
	ctx->user_port = port;
}

/* ::ffff:a.b.c.d, how a dual-stack (AF_INET6) socket names an IPv4 peer. */
#define V4_MAPPED_PREFIX bpf_htonl(0x0000ffff)

static __always_inline int is_v4_mapped(const struct ppctl_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == V4_MAPPED_PREFIX;
}

/* An IPv4 address as ppctl stores it (first word) becomes ::ffff:a.b.c.d. */
static __always_inline void map_v4(struct ppctl_addr *a)
{
	a->w[3] = a->w[0];
	a->w[2] = V4_MAPPED_PREFIX;
	a->w[1] = 0;
	a->w[0] = 0;
}

static __always_inline int on_connect(struct bpf_sock_addr *ctx, __u8 family)
{
	struct ppctl_service_key key = {};
	struct ppctl_backend *be;
	struct ppctl_addr to = {};
	int refuse, mapped = 0;

	get_user_addr(ctx, family, &key.vip);
	key.family = family;
	/* A dual-stack socket (Java's, for one) connecting to an IPv4 VIP: the
	 * service is the IPv4 one, and the backend is given back mapped. */
	if (family == PPCTL_FAMILY_IPV6 && is_v4_mapped(&key.vip)) {
		key.vip.w[0] = key.vip.w[3];
		key.vip.w[2] = 0;
		key.vip.w[3] = 0;
		key.family = PPCTL_FAMILY_IPV4;
		mapped = 1;
	}
	key.port = (__u16)ctx->user_port;
	key.proto = PPCTL_PROTO_TCP;
	be = balance(ctx, &key, &refuse);
	if (refuse) {
		bpf_set_retval(-ECONNREFUSED);
		return CGROUP_DENY;
	}
	if (!be)
		return CGROUP_ALLOW;
	to = be->addr;
	if (mapped)
		map_v4(&to);
	set_user_addr(ctx, family, &to, be->port);
	return CGROUP_ALLOW;
}

SEC("cgroup/connect4")
int ppctl_connect4(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, PPCTL_FAMILY_IPV4);
}

SEC("cgroup/connect6")
int ppctl_connect6(struct bpf_sock_addr *ctx)
{
	return on_connect(ctx, PPCTL_FAMILY_IPV6);
}

/* MARK: - getpeername() */

static __always_inline int on_getpeername(struct bpf_sock_addr *ctx, __u8 family)
{
	struct ppctl_sock_state *st = bpf_sk_storage_get(&ppctl_sock_state, ctx->sk, 0, 0);
	struct ppctl_addr vip;

	if (!st)
		return CGROUP_ALLOW;
	vip = st->vip;
	if (family == PPCTL_FAMILY_IPV6 && st->family == PPCTL_FAMILY_IPV4) {
		/* A dual-stack socket that asked for an IPv4 VIP: give it back mapped. */
		map_v4(&vip);
	} else if (st->family != family) {
		return CGROUP_ALLOW;
	}
	set_user_addr(ctx, family, &vip, st->vport);
	return CGROUP_ALLOW;
}

SEC("cgroup/getpeername4")
int ppctl_getpeername4(struct bpf_sock_addr *ctx)
{
	return on_getpeername(ctx, PPCTL_FAMILY_IPV4);
}

SEC("cgroup/getpeername6")
int ppctl_getpeername6(struct bpf_sock_addr *ctx)
{
	return on_getpeername(ctx, PPCTL_FAMILY_IPV6);
}

/* MARK: - The connection is up */

/* True if tc egress made the conntrack entry of this connection (the socket's
 * local address and port to the backend it is connected to). */
static __always_inline int tc_tracks(struct bpf_sock_ops *skops, const struct ppctl_sock_state *st)
{
	struct ppctl_ct_key key = {};

	if (st->family == PPCTL_FAMILY_IPV4) {
		key.saddr.w[0] = skops->local_ip4;
		key.daddr.w[0] = skops->remote_ip4;
	} else {
		key.saddr.w[0] = skops->local_ip6[0];
		key.saddr.w[1] = skops->local_ip6[1];
		key.saddr.w[2] = skops->local_ip6[2];
		key.saddr.w[3] = skops->local_ip6[3];
		key.daddr.w[0] = skops->remote_ip6[0];
		key.daddr.w[1] = skops->remote_ip6[1];
		key.daddr.w[2] = skops->remote_ip6[2];
		key.daddr.w[3] = skops->remote_ip6[3];
	}
	/* local_port is in host order; remote_port holds the network-order port in
	 * its upper 16 bits (a sock_ops quirk kept for compatibility). */
	key.sport = bpf_htons((__u16)skops->local_port);
	key.dport = (__u16)(skops->remote_port >> 16);
	key.family = st->family;
	key.proto = PPCTL_PROTO_TCP;
	return bpf_map_lookup_elem(&ppctl_conntrack, &key) != NULL;
}

SEC("sockops")
int ppctl_sockops(struct bpf_sock_ops *skops)
{
	struct ppctl_sock_state *st;
	struct bpf_sock *sk = skops->sk;
	__u64 cookie;

	if (!sk)
		return CGROUP_ALLOW;
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		st = bpf_sk_storage_get(&ppctl_sock_state, sk, 0, 0);
		if (st && (st->flags & PPCTL_SOCK_HDR_AT_TC) && !tc_tracks(skops, st)) {
			/* No ppctl_tc_egress saw the SYN (no --iface on the way to the
			 * backend, or its table was full): the first send carries the
			 * header. A client that waits for a banner then waits for good. */
			st->flags = PPCTL_SOCK_HDR_PENDING;
		}
		if (!st || !(st->flags & PPCTL_SOCK_HDR_PENDING))
			break;
		cookie = bpf_get_socket_cookie(skops);
		if (bpf_sock_hash_update(skops, &ppctl_sockhash, &cookie, BPF_NOEXIST)) {
			/* The sockhash is full: no sk_msg will see this socket, and its
			 * data would reach the backend without a header. Counted. */
			struct ppctl_sock_stats *stats = sock_stats();

			if (stats)
				stats->header_errors++;
			break;
		}
		/* An sk_msg program cannot take its socket out of the sockhash; this
		 * program can, on the first ack that follows the header. */
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_RTT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		st = bpf_sk_storage_get(&ppctl_sock_state, sk, 0, 0);
		if (st && (st->flags & PPCTL_SOCK_HDR_PENDING))
			break;   /* an ack of something else: the header is still to come */
		/* Only sockets that joined the sockhash asked for this callback. */
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_delete_elem(&ppctl_sockhash, &cookie);
		bpf_sock_ops_cb_flags_set(skops, 0);
		break;
	}
	return CGROUP_ALLOW;
}

/* MARK: - The first send */

/* Copies the header built in scratch->buf in front of the message. The pushed
 * bytes get a buffer of their own, which the sockmap send path would hand to TCP
 * as a segment of its own; pulling the first bytes of the message in with them
 * makes header and request one segment (one packet and one ack fewer). */
#define COALESCE_MAX 1024

static __always_inline int push_header(struct sk_msg_md *msg, struct ppctl_scratch *scratch,
				       __u32 len)
{
	__u8 *data, *data_end;
	__u32 i, more;

	if (len == 0 || len > PPCTL_MAX_HEADER_LEN)
		return -1;
	more = msg->size < COALESCE_MAX ? msg->size : COALESCE_MAX;
	if (bpf_msg_push_data(msg, 0, len, 0))
		return -1;
	if (bpf_msg_pull_data(msg, 0, len + more, 0) && bpf_msg_pull_data(msg, 0, len, 0))
		return -1;
	data = msg->data;
	data_end = msg->data_end;
	for (i = 0; i < PPCTL_MAX_HEADER_LEN; i++) {
		if (i >= len)
			break;
		if (data + i + 1 > data_end)
			return -1;
		data[i] = *at(scratch->buf, i);
	}
	return 0;
}

SEC("sk_msg")
int ppctl_sk_msg(struct sk_msg_md *msg)
{
	struct ppctl_sock_stats *stats = sock_stats();
	struct ppctl_scratch *scratch;
	struct ppctl_sock_state *st;
	struct ppctl_ct_key client = {};
	struct bpf_sock *sk = msg->sk;
	__u32 zero = 0, len;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&ppctl_sock_state, sk, 0, 0);
	if (!st || !(st->flags & PPCTL_SOCK_HDR_PENDING))
		return SK_PASS;
	scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	if (!scratch)
		goto fail;

	/* The header names the client socket's own address and port, and the VIP. */
	client.family = st->family;
	if (st->family == PPCTL_FAMILY_IPV4) {
		client.saddr.w[0] = msg->local_ip4;
	} else {
		client.saddr.w[0] = msg->local_ip6[0];
		client.saddr.w[1] = msg->local_ip6[1];
		client.saddr.w[2] = msg->local_ip6[2];
		client.saddr.w[3] = msg->local_ip6[3];
	}
	client.daddr = st->vip;
	client.sport = bpf_htons((__u16)msg->local_port);
	client.dport = st->vport;
	client.proto = PPCTL_PROTO_TCP;

	len = proxy_header_build(scratch, &client, st->hdr_flags, st->service_id, st->unique_id);
	asm volatile("" : "+r"(len));
	if (push_header(msg, scratch, len))
		goto fail;
	st->flags &= ~PPCTL_SOCK_HDR_PENDING;
	if (stats)
		stats->headers_pushed++;
	return SK_PASS;
fail:
	/* The send fails (EACCES) rather than reach the backend without a header. */
	if (stats)
		stats->header_errors++;
	return SK_DROP;
}

char LICENSE[] SEC("license") = "GPL";
