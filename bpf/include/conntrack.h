/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* conntrack.h: connection entries, their state and their aging.
 *
 * A connection owns two entries (see ppctl_abi.h). State bits live in both, so
 * that either direction decides with one lookup; the rare transitions (SYN-ACK,
 * handshake ACK, header acknowledged, FIN, RST) update the peer entry too.
 * Entries age by idle time, with a timeout chosen by the connection's state; a
 * bpf_timer sweeps the table every gc_interval seconds. */
#ifndef PPCTL_CONNTRACK_H
#define PPCTL_CONNTRACK_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "maps.h"

static __always_inline struct ppctl_stats *stats_get(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&ppctl_stats_v2, &zero);
}

/* The key of the other direction of the connection `e` belongs to: the packets
 * that match it come from where e's rewritten packets go. */
static __always_inline void ct_peer_key(const struct ppctl_ct_entry *e, struct ppctl_ct_key *peer)
{
	__builtin_memset(peer, 0, sizeof(*peer));
	peer->saddr = e->nat_daddr;
	peer->daddr = e->nat_saddr;
	peer->sport = e->nat_dport;
	peer->dport = e->nat_sport;
	peer->family = e->family;
	peer->proto = PPCTL_PROTO_TCP;
}

/* Sets state bits in an entry and in its peer. */
static __always_inline void ct_set_state(struct ppctl_ct_entry *e, __u32 bits)
{
	struct ppctl_ct_key peer_key;
	struct ppctl_ct_entry *peer;

	if ((e->state & bits) == bits)
		return;
	__sync_fetch_and_or(&e->state, bits);
	ct_peer_key(e, &peer_key);
	peer = bpf_map_lookup_elem(&ppctl_conntrack, &peer_key);
	if (peer)
		__sync_fetch_and_or(&peer->state, bits);
}

/* The coarse clock, read once per jiffy. bpf_ktime_get_coarse_ns() changes only
 * at a tick anyway, but costs a helper call and a seqlock read on every packet;
 * bpf_jiffies64() is one load (the verifier inlines it). Shared by all CPUs and
 * written once per tick: two CPUs racing store about the same value, and a reader
 * that sees a new jiffy with the old time is one tick late, which idle times
 * measured in seconds do not notice. */
struct coarse_clock {
	__u64 jiffies;
	__u64 ns;
};
static struct coarse_clock ppctl_clock;

static __always_inline __u64 coarse_now(void)
{
	__u64 j = bpf_jiffies64();

	if (*(volatile __u64 *)&ppctl_clock.jiffies != j) {
		*(volatile __u64 *)&ppctl_clock.ns = bpf_ktime_get_coarse_ns();
		*(volatile __u64 *)&ppctl_clock.jiffies = j;
	}
	return *(volatile __u64 *)&ppctl_clock.ns;
}

/* How long the entry has been idle at `now`. Another CPU (or the sweeper, which
 * reads the clock once per sweep) may have stamped it after `now` was read: that
 * is idle 0, not 584 years. */
static __always_inline __u64 ct_idle_ns(__u64 now, __u64 last_seen)
{
	return now > last_seen ? now - last_seen : 0;
}

static __always_inline void ct_touch(struct ppctl_ct_entry *e, __u64 now)
{
	if (ct_idle_ns(now, e->last_seen_ns) > CT_REFRESH_NS)
		e->last_seen_ns = now;
}

/* Idle timeout (ns) of a connection in state `state`. */
static __always_inline __u64 ct_timeout_ns(const struct ppctl_config *cfg, __u32 state)
{
	__u32 seconds;

	if (state & PPCTL_CT_RST)
		seconds = cfg->timeout_rst;
	else if ((state & PPCTL_CT_FIN_CLIENT) && (state & PPCTL_CT_FIN_BACKEND))
		seconds = (state & PPCTL_CT_TIME_WAIT) ? cfg->timeout_time_wait : cfg->timeout_close;
	else if (state & (PPCTL_CT_FIN_CLIENT | PPCTL_CT_FIN_BACKEND))
		seconds = cfg->timeout_fin;
	else if (state & PPCTL_CT_ESTABLISHED)
		seconds = cfg->timeout_established;
	else
		seconds = cfg->timeout_syn;
	return (__u64)seconds * NS_PER_SEC;
}

/* May another client connection have this connection's SNAT tuple? Once it was
 * reset, or both sides closed and the client first: the backend keeps nothing of
 * it. If the backend closed first it holds the tuple in TIME_WAIT, and a stranger's
 * SYN there would meet PAWS (unrelated timestamps): the tuple stays ours for
 * timeout_time_wait. Any connection is over when idle past its state's timeout. */
static __always_inline int ct_is_reclaimable(const struct ppctl_config *cfg,
					     const struct ppctl_ct_entry *e, __u64 now)
{
	if (e->state & PPCTL_CT_RST)
		return 1;
	if ((e->state & PPCTL_CT_FIN_CLIENT) && (e->state & PPCTL_CT_FIN_BACKEND) &&
	    !(e->state & PPCTL_CT_TIME_WAIT))
		return 1;
	return ct_idle_ns(now, e->last_seen_ns) > ct_timeout_ns(cfg, e->state);
}

/* The backend's SYN-ACK for this connection: its ISN goes into both entries, its
 * stream starts at ISN+1, and both entries say SYN-ACK seen. */
static __always_inline void ct_syn_ack(struct ppctl_ct_entry *e, __u32 backend_isn)
{
	struct ppctl_ct_key peer_key;
	struct ppctl_ct_entry *peer;

	e->backend_isn = backend_isn;
	e->snd_end = backend_isn + 1;
	__sync_fetch_and_or(&e->state, PPCTL_CT_SYN_ACK_SEEN);
	ct_peer_key(e, &peer_key);
	peer = bpf_map_lookup_elem(&ppctl_conntrack, &peer_key);
	if (peer) {
		peer->backend_isn = backend_isn;
		__sync_fetch_and_or(&peer->state, PPCTL_CT_SYN_ACK_SEEN);
	}
}

static __always_inline struct ppctl_service_stats *service_stats(__u32 service_id)
{
	return bpf_map_lookup_elem(&ppctl_service_stats, &service_id);
}

/* Adds what an entry translated to its backend's counters. */
static __always_inline void ct_fold(struct ppctl_backend_stats *b, const struct ppctl_ct_entry *e)
{
	if (e->dir == PPCTL_DIR_ORIGINAL) {
		b->packets_to_backend += e->packets;
		b->bytes_to_backend += e->bytes;
	} else {
		b->packets_to_client += e->packets;
		b->bytes_to_client += e->bytes;
	}
}

/* Removes both entries of the connection that `key`/`e` belong to, first folding
 * their traffic into the backend's counters. (A function of its own: its frame
 * stays off the callers' stacks.) */
static __noinline void ct_delete_connection(const struct ppctl_ct_key *key,
					    const struct ppctl_ct_entry *e)
{
	struct ppctl_ct_key peer_key;
	struct ppctl_ct_entry *peer;
	struct ppctl_backend_stats *b;
	__u32 backend_id;

	if (!key || !e)
		return;
	backend_id = e->backend_id;
	ct_peer_key(e, &peer_key);
	peer = bpf_map_lookup_elem(&ppctl_conntrack, &peer_key);
	b = bpf_map_lookup_elem(&ppctl_backend_stats, &backend_id);
	if (b) {
		ct_fold(b, e);
		if (peer)
			ct_fold(b, peer);
	}
	bpf_map_delete_elem(&ppctl_conntrack, &peer_key);
	bpf_map_delete_elem(&ppctl_conntrack, key);
}

/* MARK: - The sweeper */

/* The sweeper's fold (it deletes by itself: it already holds both entries). */
static __always_inline void fold_expired(const struct ppctl_ct_entry *e, const struct ppctl_ct_entry *peer)
{
	__u32 backend_id = e->backend_id;
	struct ppctl_backend_stats *b = bpf_map_lookup_elem(&ppctl_backend_stats, &backend_id);

	if (!b)
		return;
	ct_fold(b, e);
	if (peer)
		ct_fold(b, peer);
}

struct gc_ctx {
	struct ppctl_config *cfg;
	__u64 now;
	__u64 expired;
};

static long gc_visit(struct bpf_map *map, struct ppctl_ct_key *key,
		     struct ppctl_ct_entry *e, struct gc_ctx *ctx)
{
	struct ppctl_ct_key peer_key;
	struct ppctl_ct_entry *peer;
	__u64 last = e->last_seen_ns;

	ct_peer_key(e, &peer_key);
	peer = bpf_map_lookup_elem(&ppctl_conntrack, &peer_key);
	if (peer) {
		/* The pair is judged once, from its ORIGINAL entry. */
		if (e->dir != PPCTL_DIR_ORIGINAL)
			return 0;
		if (peer->last_seen_ns > last)
			last = peer->last_seen_ns;
	}
	if (ct_idle_ns(ctx->now, last) <= ct_timeout_ns(ctx->cfg, e->state))
		return 0;
	fold_expired(e, peer);
	if (peer) {
		bpf_map_delete_elem(&ppctl_conntrack, &peer_key);
		ctx->expired++;
	}
	bpf_map_delete_elem(&ppctl_conntrack, key);
	ctx->expired++;
	return 0;
}

static int gc_tick(void *map, __u32 *key, struct ppctl_gc_state *gc)
{
	struct gc_ctx ctx = { .now = coarse_now() };
	struct ppctl_stats *stats;
	__u64 interval = PPCTL_DEFAULT_GC_INTERVAL * NS_PER_SEC;

	ctx.cfg = config_get();
	if (ctx.cfg) {
		if (ctx.cfg->gc_interval)
			interval = (__u64)ctx.cfg->gc_interval * NS_PER_SEC;
		bpf_for_each_map_elem(&ppctl_conntrack, gc_visit, &ctx, 0);
	}
	stats = stats_get();
	if (stats)
		stats->gc_expired += ctx.expired;
	bpf_timer_start(&gc->timer, interval, 0);
	return 0;
}

/* Arms the sweeper the first time a connection is created (and again after the
 * control plane reset the timer on an upgrade). */
static __always_inline void gc_arm(void)
{
	__u32 zero = 0;
	struct ppctl_gc_state *gc = bpf_map_lookup_elem(&ppctl_gc, &zero);

	if (!gc || gc->armed)
		return;
	gc->armed = 1;
	if (bpf_timer_init(&gc->timer, &ppctl_gc, CLOCK_MONOTONIC) != 0)
		return;
	bpf_timer_set_callback(&gc->timer, gc_tick);
	bpf_timer_start(&gc->timer, PPCTL_DEFAULT_GC_INTERVAL * NS_PER_SEC, 0);
}

#endif /* PPCTL_CONNTRACK_H */
