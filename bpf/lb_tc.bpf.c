/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * lb_tc.bpf.c: ppctl's tc datapath, top to bottom as a packet lives it.
 *
 * One program at clsact ingress on every interface of the balancer. A packet
 * either belongs to a tracked connection (one lookup tells which direction) and
 * is rewritten and redirected, or it is a SYN to a service and creates one, or it
 * is none of ppctl's business and goes to the stack untouched. A second program,
 * at egress, writes the header of local clients of PROXY services (the socket
 * path hands them over; see lb_sock.bpf.c, include/local_clients.h and the end
 * of this file). Rewriting, segment rebuilding and SNAT are in include/nat.h.
 *
 *   client --SYN--> [ingress] new_connection: pick a backend, route;
 *                             open_connection: a TIME_WAIT-safe SNAT tuple, two
 *                             conntrack entries; SYN rewritten, redirected. A SYN
 *                             that cannot be taken is answered with a RST.
 *   only segments in the connection's window change its state (RST at the next
 *   sequence, FIN near it, the SYN-ACK for this ISN, acks of what was sent).
 *   backend --SYN-ACK--> [ingress] to_client: rewritten back to VIP -> client.
 *   client --ACK--> [ingress] to_backend: for a PROXY service, this ACK at ISN+1
 *                             grows into the segment that carries the header.
 *   afterwards: client->backend seq += hdr_len, backend->client ack/SACK -= hdr_len.
 *
 * docs/datapath.md tells the same story with the arithmetic worked out.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "maps.h"
#include "sock_state_map.h"
#include "parse.h"
#include "csum.h"
#include "conntrack.h"
#include "nat.h"
#include "seq.h"
#include "proxy_header.h"
#include "local_clients.h"

/* MARK: - The PROXY header */

/*
 * Turns this client segment at ISN+1 into the segment that carries the PROXY
 * header: its payload (if any) is replaced by the header, seq is ISN+1, and the
 * TCP header stays where it is (the skb grows or shrinks at the tail, so
 * csum_start stays right, and a GSO packet becomes a plain small one). A FIN is
 * kept only if the segment had no data: then it follows the header in the
 * backend's sequence space exactly where it followed nothing in the client's.
 */
static __noinline int send_header(struct __sk_buff *skb, const struct packet *p,
				       struct ppctl_ct_entry *e, struct ppctl_stats *stats)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	struct ppctl_service_stats *svc_stats;
	__u32 len;
	__u8 clear = p->payload_len ? TCPF_FIN : 0;

	const struct ppctl_ct_key *tuple = &p->key;

	if (!scratch)
		return TC_ACT_SHOT;
	if (e->dir_flags & PPCTL_CT_L_LOCAL) {
		if (local_header_tuple(skb, p, &scratch->tuple, NULL))
			goto fail;
		tuple = &scratch->tuple;
	}
	len = proxy_header_build(scratch, tuple, e->hdr_flags, e->service_id,
				 e->unique_id);
	/* clang knows the bound from the builder's body; the verifier must see it. */
	asm volatile("" : "+r"(len));
	if (len == 0 || len != e->hdr_len || len > PPCTL_MAX_HEADER_LEN)
		goto fail;   /* the service's TLVs changed under a live connection */

	if (bpf_skb_change_tail(skb, p->l4_off + p->tcp_hlen + len, 0))
		goto fail;
	if (bpf_skb_store_bytes(skb, p->l4_off + p->tcp_hlen, scratch->buf, len, 0))
		goto fail;
	if (finish_segment(skb, p, e, e->client_isn + 1, scratch->buf, len, clear))
		goto fail;

	svc_stats = service_stats(e->service_id);
	if (svc_stats) {
		if (e->state & PPCTL_CT_HDR_SENT)
			svc_stats->headers_resent++;
		else
			svc_stats->headers_injected++;
	}
	e->packets++;
	e->bytes += skb->len;
	if (stats) {
		if (e->state & PPCTL_CT_HDR_SENT)
			stats->headers_resent++;
		else
			stats->headers_injected++;
		stats->packets_to_backend++;
		stats->bytes_to_backend += skb->len;
	}
	__sync_fetch_and_or(&e->state, PPCTL_CT_HDR_SENT);
	return forward(e, stats);
fail:
	/* The client will send this segment again; nothing was forwarded. */
	count_fwd_drop(stats, dropped_header_error);
	return TC_ACT_SHOT;
}

/*
 * Client data at ISN+1 while the header is not known to be through: either the
 * header never went out (the handshake ACK was lost before us) or this is a
 * retransmission because it was lost after us. The data goes on as it is
 * (translated, as a clone), and the original skb becomes the header segment.
 */
static __always_inline int send_header_before_data(struct __sk_buff *skb, struct packet *p,
						   struct ppctl_ct_entry *e,
						   struct ppctl_stats *stats)
{
	/* (A clone of a local client's segment would meet the egress program again.) */
	if ((e->dir_flags & (PPCTL_CT_L_FWD_CACHED | PPCTL_CT_L_LOCAL)) == PPCTL_CT_L_FWD_CACHED) {
		if (rewrite_packet(skb, p, e, p->seq + e->hdr_len, p->ack, 0)) {
			count_fwd_drop(stats, dropped_rewrite_error);       /* the data copy */
		} else if (bpf_clone_redirect(skb, e->ifindex, 0)) {
			count_fwd_drop(stats, dropped_redirect_error);
		} else {
			e->packets++;
			e->bytes += skb->len;
			if (stats) {
				stats->data_split++;
				stats->packets_to_backend++;
				stats->bytes_to_backend += skb->len;
			}
		}
	}
	/* Without a clone the client's retransmission brings the data. */
	return send_header(skb, p, e, stats);
}

/* MARK: - The sender's side of a segment */

/* What a segment says about its sender, in either direction: a RST resets only at
 * the sender's next sequence number (RFC 5961; others go on for the endpoint to
 * judge, and answer with a challenge ACK); any other segment moves the sender's
 * edge (snd_end) if it lies near it, and a FIN near it sets `fin_bits`. */
static __always_inline void track_sender(struct ppctl_ct_entry *e, const struct packet *p,
					 __u32 fin_bits, struct ppctl_stats *stats)
{
	__u32 end;

	if (p->flags & TCPF_RST) {
		if (p->seq == e->snd_end)
			ct_set_state(e, PPCTL_CT_RST);
		else if (stats)
			stats->ignored_rst++;
		return;
	}
	end = seq_end(p);
	if (seq_gt(end, e->snd_end) && seq_near(end, e->snd_end))
		e->snd_end = end;
	if ((p->flags & TCPF_FIN) && seq_near(p->seq, e->snd_end))
		ct_set_state(e, fin_bits);
}

/* MARK: - Client -> backend */

/* Global functions (here and below) are verified once, on their own: it keeps the
 * verifier's work far below its limit. Their pointer arguments may be NULL.
 *
 * State changes only on segments that belong to the connection (docs/datapath.md,
 * "Which segments change state"): a RST at the sender's next sequence number, a
 * FIN within its window, the handshake ACK that acknowledges the backend's SYN. */
__noinline int to_backend(struct __sk_buff *skb, struct packet *p, struct ppctl_ct_entry *e,
			  struct ppctl_stats *stats, __u64 now)
{
	__u32 seq;

	if (!skb || !p || !e)
		return TC_ACT_SHOT;
	seq = p->seq;

	ct_touch(e, now);
	if (!(e->dir_flags & (PPCTL_CT_L_FWD_CACHED | PPCTL_CT_L_LOCAL)))
		route_entry(skb, e, NULL, 0);   /* the neighbour may be known by now */

	if (!(e->state & PPCTL_CT_SYN_ACK_SEEN) && !(p->flags & (TCPF_SYN | TCPF_RST))) {
		/* Before the backend answered, the client has nothing else to send. */
		if (stats)
			stats->dropped_out_of_window++;
		return TC_ACT_SHOT;
	}

	track_sender(e, p, PPCTL_CT_FIN_CLIENT, stats);
	if ((p->flags & (TCPF_ACK | TCPF_SYN | TCPF_RST)) == TCPF_ACK && p->ack == e->backend_isn + 1 &&
	    (e->state & (PPCTL_CT_SYN_ACK_SEEN | PPCTL_CT_ESTABLISHED)) == PPCTL_CT_SYN_ACK_SEEN)
		ct_set_state(e, PPCTL_CT_ESTABLISHED);

	/* A retransmitted SYN loses its data like the first one did (the trim
	 * rewrites the whole segment). */
	if ((p->flags & TCPF_SYN) && p->payload_len && e->hdr_len) {
		if (trim_syn_payload(skb, p, e, stats))
			goto fail;
		goto out;
	}

	/* Only the client's stream moves, and only once the backend has answered: a
	 * RST before that (answering a backend TIME_WAIT's ack from an older connection
	 * on this tuple, which went to the client untouched) goes back untouched. */
	if (e->hdr_len && !(p->flags & TCPF_SYN) && (e->state & PPCTL_CT_SYN_ACK_SEEN)) {
		if (p->seq == e->client_isn + 1 && !(p->flags & TCPF_RST) &&
		    !(e->state & PPCTL_CT_HDR_ACKED)) {
			if (p->payload_len == 0)
				return send_header(skb, p, e, stats);
			if (!(e->state & PPCTL_CT_HDR_SENT) || (e->dir_flags & PPCTL_CT_L_DATA_SEEN))
				return send_header_before_data(skb, p, e, stats);
			/* First transmission of the data, right behind the header. */
			e->dir_flags |= PPCTL_CT_L_DATA_SEEN;
		}
		/* A sequence number before ISN+1 goes back untouched. */
		if ((e->state & PPCTL_CT_HDR_ACKED) || seq_geq(p->seq, e->client_isn + 1))
			seq += e->hdr_len;
	}

	if (rewrite_packet(skb, p, e, seq, p->ack, 0))
		goto fail;
out:
	e->packets++;
	e->bytes += skb->len;
	if (stats) {
		stats->packets_to_backend++;
		stats->bytes_to_backend += skb->len;
	}
	return forward(e, stats);
fail:
	count_fwd_drop(stats, dropped_rewrite_error);
	return TC_ACT_SHOT;
}

/* MARK: - Backend -> client */

/* Until the backend has acknowledged the header, an ack of this connection lies
 * between ISN+1 and the end of what the client has sent, moved up by the header. */
static __always_inline int ack_in_window(const struct ppctl_ct_entry *e, __u32 ack)
{
	struct ppctl_ct_key orig_key;
	struct ppctl_ct_entry *orig;

	ct_peer_key(e, &orig_key);
	orig = bpf_map_lookup_elem(&ppctl_conntrack, &orig_key);
	return orig && seq_geq(ack, e->client_isn + 1) && seq_geq(orig->snd_end + e->hdr_len, ack);
}

__noinline int to_client(struct __sk_buff *skb, struct packet *p, struct ppctl_ct_entry *e,
			 struct ppctl_stats *stats, __u64 now)
{
	__u32 ack, acked, sack_diff = 0;

	if (!skb || !p || !e)
		return TC_ACT_SHOT;
	ack = p->ack;

	ct_touch(e, now);
	if (!(e->state & PPCTL_CT_SYN_ACK_SEEN)) {
		/* Before the backend answered, only its SYN-ACK for this ISN or its
		 * refusal (a RST acknowledging the SYN) belong to the connection. The
		 * rest (a TIME_WAIT's ack from an older connection on this SNAT tuple)
		 * goes to the client untranslated: the client's RST in reply frees the
		 * tuple at the backend, and the client's next SYN gets through. */
		if ((p->flags & TCPF_ACK) && p->ack == e->client_isn + 1) {
			if ((p->flags & (TCPF_SYN | TCPF_RST)) == TCPF_SYN)
				ct_syn_ack(e, p->seq);
			else if (p->flags & TCPF_RST)
				ct_set_state(e, PPCTL_CT_RST);
		}
		goto rewrite;
	}

	/* A backend that closes first holds the tuple in TIME_WAIT. */
	track_sender(e, p, PPCTL_CT_FIN_BACKEND |
		     ((e->state & PPCTL_CT_FIN_CLIENT) ? 0 : PPCTL_CT_TIME_WAIT), stats);

	if (e->hdr_len && (p->flags & TCPF_ACK)) {
		if (!(e->state & PPCTL_CT_HDR_ACKED)) {
			if (!ack_in_window(e, p->ack)) {
				if (!(p->flags & TCPF_RST)) {
					if (stats)
						stats->dropped_out_of_window++;
					return TC_ACT_SHOT;
				}
			} else if (seq_geq(p->ack, e->client_isn + 1 + e->hdr_len)) {
				ct_set_state(e, PPCTL_CT_HDR_ACKED);
			}
		}
		acked = e->state & PPCTL_CT_HDR_ACKED;
		ack = ack_to_client(p->ack, e->client_isn, e->hdr_len, acked);
		sack_diff = translate_sack(skb, p, e->client_isn, e->hdr_len, acked);
	}

rewrite:
	if (rewrite_packet(skb, p, e, p->seq, ack, sack_diff)) {
		count_fwd_drop(stats, dropped_rewrite_error);
		return TC_ACT_SHOT;
	}
	e->packets++;
	e->bytes += skb->len;
	if (stats) {
		stats->packets_to_client++;
		stats->bytes_to_client += skb->len;
	}
	return forward(e, stats);
}

/* MARK: - New connections */

/* Answers a SYN the balancer cannot take with a RST from the VIP, so that the
 * client knows at once instead of after its SYN retries. As RFC 793 says for a
 * segment without ACK: seq 0, ack = the SYN's sequence number + 1 + its data. The
 * skb itself becomes the RST and leaves by the interface it came in on (p is
 * spent). */
static __noinline int refuse_syn(struct __sk_buff *skb, struct packet *p,
				 struct ppctl_stats *stats)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	struct ppctl_ct_entry *back;
	void *data, *data_end;
	struct ethhdr *eth;
	struct tcphdr *tcp;

	if (!scratch)
		return TC_ACT_SHOT;
	back = &scratch->rev;
	__builtin_memset(back, 0, sizeof(*back));
	back->nat_saddr = p->key.daddr;
	back->nat_daddr = p->key.saddr;
	back->nat_sport = p->key.dport;
	back->nat_dport = p->key.sport;
	back->family = p->key.family;
	back->dir_flags = PPCTL_CT_L_FWD_CACHED;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	__builtin_memcpy(back->smac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(back->dmac, eth->h_source, ETH_ALEN);

	if (bpf_skb_change_tail(skb, p->l4_off + TCP_HLEN_MIN, 0))
		return TC_ACT_SHOT;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	tcp = data + (p->l4_off & L4_OFF_MASK);
	if ((void *)(tcp + 1) > data_end)
		return TC_ACT_SHOT;
	tcp->ack_seq = bpf_htonl(p->seq + 1 + p->payload_len);
	((__u8 *)tcp)[12] = (TCP_HLEN_MIN / 4) << 4;
	((__u8 *)tcp)[TCP_FLAGS_OFF] = TCPF_RST | TCPF_ACK;
	tcp->window = 0;
	tcp->urg_ptr = 0;
	p->tcp_hlen = TCP_HLEN_MIN;
	p->payload_len = 0;
	if (finish_segment(skb, p, back, 0, NULL, 0, 0))
		return TC_ACT_SHOT;
	if (stats)
		stats->resets_sent++;
	return bpf_redirect(skb->ingress_ifindex, 0);
}

/* Counts a connection given to a backend; makes the backend's counters on its
 * first one. */
static __always_inline void count_connection(__u32 backend_id)
{
	struct ppctl_backend_stats *b = bpf_map_lookup_elem(&ppctl_backend_stats, &backend_id);

	if (!b) {
		struct ppctl_backend_stats zero = {};

		bpf_map_update_elem(&ppctl_backend_stats, &backend_id, &zero, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&ppctl_backend_stats, &backend_id);
		if (!b)
			return;
	}
	b->connections++;
}

/* What new_connection returns for a SYN to answer with a RST (refuse_syn), and for
 * one to go on with (open_connection). */
#define VERDICT_REFUSE 0x100
#define VERDICT_OPEN   0x101

__noinline int new_connection(struct __sk_buff *skb, struct packet *p,
			      const struct ppctl_service *svc, struct ppctl_stats *stats)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	__u64 now = coarse_now();
	struct ppctl_ct_entry *fwd, *rev;
	struct ppctl_service_stats *svc_stats;
	struct ppctl_snat_pool *pool;
	struct ppctl_config *cfg;
	struct ppctl_backend *be;
	struct ethhdr *eth;
	void *data, *data_end;
	__u32 backend_id;

	if (!skb || !p || !svc || !scratch)
		return TC_ACT_SHOT;
	fwd = &scratch->fwd;
	rev = &scratch->rev;
	__builtin_memset(fwd, 0, sizeof(*fwd));
	__builtin_memset(rev, 0, sizeof(*rev));
	cfg = config_get();
	be = pick_backend(svc, flow_hash(&p->key, cfg ? cfg->hash_seed : 0), p->key.family, &backend_id);
	if (!be) {
		svc_stats = service_stats(svc->id);
		if (svc_stats)
			svc_stats->refused_no_backend++;
		if (stats)
			stats->refused_no_backend++;
		return VERDICT_REFUSE;
	}

	/* ORIGINAL: client -> VIP becomes SNAT address:port -> backend. */
	fwd->nat_daddr = be->addr;
	fwd->nat_dport = be->port;
	fwd->dir = PPCTL_DIR_ORIGINAL;
	fwd->family = p->key.family;
	fwd->client_isn = p->seq;
	fwd->snd_end = p->seq + 1;
	fwd->hdr_flags = header_flags(svc->flags);
	fwd->unique_id = new_unique_id(fwd->hdr_flags);
	/* The header's length is the connection's sequence delta: build it once. */
	fwd->hdr_len = proxy_header_build(scratch, &p->key, fwd->hdr_flags, svc->id,
					  fwd->unique_id);
	if ((svc->flags & (PPCTL_SVC_PROXY_V1 | PPCTL_SVC_PROXY_V2)) && !fwd->hdr_len)
		goto no_header;
	fwd->service_id = svc->id;
	fwd->backend_id = backend_id;
	fwd->created_ns = now;
	fwd->last_seen_ns = now;
	pool = snat_pool(svc);
	if (pool) {
		fwd->nat_saddr = pool->addr[0];
		if (route_entry(skb, fwd, NULL, 0))
			goto no_route;
	} else {
		if (route_entry(skb, fwd, &fwd->nat_saddr, 1) || !fwd->nat_saddr.w[0])
			goto no_route;
	}

	/* REPLY: backend -> SNAT address:port becomes VIP -> client, sent back the
	 * way the SYN came. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_SHOT;
	rev->nat_saddr = p->key.daddr;
	rev->nat_daddr = p->key.saddr;
	rev->nat_sport = p->key.dport;
	rev->nat_dport = p->key.sport;
	rev->dir = PPCTL_DIR_REPLY;
	rev->family = fwd->family;
	rev->client_isn = fwd->client_isn;
	rev->hdr_len = fwd->hdr_len;
	rev->hdr_flags = fwd->hdr_flags;
	rev->unique_id = fwd->unique_id;
	rev->service_id = fwd->service_id;
	rev->backend_id = fwd->backend_id;
	rev->created_ns = now;
	rev->last_seen_ns = now;
	rev->ifindex = skb->ingress_ifindex;
	__builtin_memcpy(rev->smac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(rev->dmac, eth->h_source, ETH_ALEN);
	rev->dir_flags = PPCTL_CT_L_FWD_CACHED | egress_flags(rev->ifindex);
	return VERDICT_OPEN;

no_header:
	count_fwd_drop(stats, dropped_header_error);
	return TC_ACT_SHOT;
no_route:
	count_fwd_drop(stats, dropped_no_route);
	return TC_ACT_SHOT;
}

/* The second half of a new connection, whose entries new_connection built in the
 * scratch space: a SNAT tuple, both entries in the table, the SYN rewritten and
 * sent on. (Two functions, so that neither call chain outgrows the BPF stack.) */
__noinline int open_connection(struct __sk_buff *skb, struct packet *p,
			       const struct ppctl_service *svc, int reused,
			       struct ppctl_stats *stats)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	struct snat_hint *hint = reused ? bpf_map_lookup_elem(&ppctl_hint, &zero) : NULL;
	__u64 now = coarse_now();
	struct ppctl_service_stats *svc_stats;
	struct ppctl_ct_entry *fwd;
	int rc;

	if (!skb || !p || !svc || !scratch)
		return TC_ACT_SHOT;
	fwd = &scratch->fwd;
	svc_stats = service_stats(svc->id);
	rc = snat_alloc(p, snat_pool(svc), hint, now);
	if (rc == SNAT_EXHAUSTED) {
		if (svc_stats)
			svc_stats->refused_snat_exhausted++;
		if (stats)
			stats->refused_snat_exhausted++;
		return VERDICT_REFUSE;
	}
	if (rc)
		goto table_full;
	fwd->packets = 1;           /* this SYN */
	fwd->bytes = skb->len;
	if (bpf_map_update_elem(&ppctl_conntrack, &p->key, fwd, BPF_NOEXIST)) {
		bpf_map_delete_elem(&ppctl_conntrack, &scratch->tuple);
		goto table_full;
	}
	gc_arm();
	count_connection(fwd->backend_id);
	if (svc_stats)
		svc_stats->connections++;
	if (stats)
		stats->connections++;

	if (p->payload_len && fwd->hdr_len) {
		if (trim_syn_payload(skb, p, fwd, stats))
			goto fail;
	} else if (rewrite_packet(skb, p, fwd, p->seq, p->ack, 0)) {
		goto fail;
	}
	if (stats) {
		stats->packets_to_backend++;
		stats->bytes_to_backend += skb->len;
	}
	return forward(fwd, stats);

fail:
	count_fwd_drop(stats, dropped_rewrite_error);
	return TC_ACT_SHOT;
table_full:
	if (svc_stats)
		svc_stats->refused_table_full++;
	if (stats)
		stats->refused_table_full++;
	return VERDICT_REFUSE;
}

/* MARK: - Entry points */

/* Parses the packet (pulling the headers in if they are not linear); PARSE_OK or
 * why not, counted. */
static __always_inline int parse_or_count(struct __sk_buff *skb, struct packet *p,
					  struct ppctl_stats *stats)
{
	int rc;

	pull_headers(skb);
	rc = parse_packet(skb, p);
	if (rc == PARSE_NEED_PULL) {
		__u32 want = ETH_HLEN + IPV6_HLEN_MAX + TCP_HLEN_MIN;

		bpf_skb_pull_data(skb, skb->len < want ? skb->len : want);
		rc = parse_packet(skb, p);
	}
	if (stats && (rc == PARSE_MALFORMED || rc == PARSE_FRAGMENT))
		stats->passed_unparsed++;
	return rc;
}

SEC("tc")
int ppctl_tc_ingress(struct __sk_buff *skb)
{
	struct packet p = {};
	struct ppctl_service_key skey = {};
	struct ppctl_service *svc;
	int reused = 0, rc;
	struct ppctl_ct_entry *e;
	struct ppctl_stats *stats;
	__u64 now;

	/* A frame addressed to another host (flooded by a switch, or seen by a
	 * promiscuous interface) is not this balancer's to take: with several
	 * balancers on one segment, another may be its destination. */
	if (skb->pkt_type != PACKET_HOST)
		return TC_ACT_OK;
	stats = stats_get();
	if (parse_or_count(skb, &p, stats) != PARSE_OK)
		return TC_ACT_OK;

	now = coarse_now();
	e = bpf_map_lookup_elem(&ppctl_conntrack, &p.key);
	if (e) {
		if (e->dir == PPCTL_DIR_REPLY)
			return to_client(skb, &p, e, stats, now);
		if (!(p.flags & TCPF_SYN) ||
		    (p.seq == e->client_isn && !(e->state & (PPCTL_CT_RST | PPCTL_CT_FIN_CLIENT |
							     PPCTL_CT_FIN_BACKEND))))
			return to_backend(skb, &p, e, stats, now);
		/* A new connection on a tracked tuple: a SYN with a new ISN (the client
		 * reuses its port), or any SYN after a RST or FIN. It gets fresh state
		 * and a fresh header, and the SNAT tuple of its predecessor if it can. */
		snat_remember(e);
		reused = 1;
		ct_delete_connection(&p.key, e);
		if (stats)
			stats->conns_reused++;
	}

	skey.vip = p.key.daddr;
	skey.port = p.key.dport;
	skey.family = p.key.family;
	skey.proto = PPCTL_PROTO_TCP;
	svc = bpf_map_lookup_elem(&ppctl_services, &skey);
	if (!svc)
		return TC_ACT_OK;

	if ((p.flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) != TCPF_SYN) {
		/* Not the start of a connection, and none is known: nothing to
		 * translate it with. */
		if (stats)
			stats->dropped_no_conn++;
		return TC_ACT_SHOT;
	}
	rc = new_connection(skb, &p, svc, stats);
	if (rc == VERDICT_OPEN)
		rc = open_connection(skb, &p, svc, reused, stats);
	return rc == VERDICT_REFUSE ? refuse_syn(skb, &p, stats) : rc;
}

/* At egress, only locally made packets: those of local clients of PROXY services,
 * whose header goes out here. Forwarded packets (no socket) pass after
 * one test, packets of the host's other TCP sockets after a read of the socket's
 * storage (from_untracked_socket), the rest after one lookup. The lookup is by
 * tuple, not by socket, so that what the kernel sends for a connection from
 * elsewhere (a TIME_WAIT ack or a reset, from the namespace's control socket) is
 * translated too. Replies come in through ppctl_tc_ingress, which finds their REPLY entries. */
SEC("tc")
int ppctl_tc_egress(struct __sk_buff *skb)
{
	struct packet p = {};
	struct ppctl_ct_entry *e;
	struct ppctl_stats *stats;
	__u64 now;

	if (!skb->sk || from_untracked_socket(skb))
		return TC_ACT_OK;
	stats = stats_get();
	if (parse_or_count(skb, &p, stats) != PARSE_OK)
		return TC_ACT_OK;

	now = coarse_now();
	e = bpf_map_lookup_elem(&ppctl_conntrack, &p.key);
	if (e) {
		if (e->dir != PPCTL_DIR_ORIGINAL || !(e->dir_flags & PPCTL_CT_L_LOCAL))
			return TC_ACT_OK;
		if (!(p.flags & TCPF_SYN) || p.seq == e->client_isn)
			return to_backend(skb, &p, e, stats, now);
		ct_delete_connection(&p.key, e);
		if (stats)
			stats->conns_reused++;
	}
	if ((p.flags & (TCPF_SYN | TCPF_ACK | TCPF_RST | TCPF_FIN)) != TCPF_SYN)
		return TC_ACT_OK;
	return new_local_connection(skb, &p, stats, now);
}

char LICENSE[] SEC("license") = "GPL";
