/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * lb_tc.bpf.c: ppctl's tc datapath, top to bottom as a packet lives it.
 *
 * One program at clsact ingress on every interface of the balancer. A packet
 * either belongs to a tracked connection (one lookup tells which direction) and
 * is rewritten and redirected, or it is a SYN to a service and creates one, or it
 * is none of ppctl's business and goes to the stack untouched. A second program,
 * at egress, writes the header of local clients of PROXY services (the socket
 * path hands them over; see lb_sock.bpf.c and the end of this file).
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

/* MARK: - Local clients */

/* For a local client's packet (tc egress, skb->sk is its socket): the tuple its
 * header names, the packet's own with the VIP the socket asked for (the socket
 * path's connect4 sent it to the backend) in place of the backend. Returns -1 if
 * the socket is not one the socket path sent here with a header owed at tc. */
static __always_inline int local_header_tuple(struct __sk_buff *skb, const struct packet *p,
					      struct ppctl_ct_key *tuple,
					      struct ppctl_sock_state **state)
{
	struct ppctl_sock_state *st;
	struct bpf_sock *sk = skb->sk;

	if (!sk)
		return -1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return -1;
	st = bpf_sk_storage_get(&ppctl_sock_state, sk, 0, 0);
	if (!st || !(st->flags & PPCTL_SOCK_HDR_AT_TC) || st->family != p->key.family)
		return -1;
	*tuple = p->key;
	tuple->daddr = st->vip;
	tuple->dport = st->vport;
	if (state)
		*state = st;
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
	((__u8 *)tcp)[13] = (((__u8 *)tcp)[13] & ~clear_flags) | (len ? TCPF_PSH : 0);
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

/* MARK: - TCP Fast Open */

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
	((__u8 *)tcp)[13] = TCPF_RST | TCPF_ACK;
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

/* What new_connection returns for a SYN to answer with a RST (refuse_syn), and for
 * one to go on with (open_connection). */
#define VERDICT_REFUSE 0x100
#define VERDICT_OPEN   0x101

/* The SNAT pool a new connection of `svc` draws from: its own, else the
 * instance's default, else none (the route's source address). */
static __always_inline struct ppctl_snat_pool *snat_pool(const struct ppctl_service *svc)
{
	__u32 key = (svc->flags & PPCTL_SVC_SNAT_POOL) ? svc->id : PPCTL_SNAT_POOL_DEFAULT;
	struct ppctl_snat_pool *pool = bpf_map_lookup_elem(&ppctl_snat_pools, &key);

	return pool && pool->count ? pool : NULL;
}

__noinline int new_connection(struct __sk_buff *skb, struct packet *p,
			      const struct ppctl_service *svc, struct ppctl_stats *stats)
{
	__u32 zero = 0;
	struct ppctl_scratch *scratch = bpf_map_lookup_elem(&ppctl_scratch, &zero);
	__u64 now = bpf_ktime_get_coarse_ns();
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
	fwd->hdr_flags = svc->flags & (PPCTL_SVC_PROXY_V1 | PPCTL_SVC_PROXY_V2 |
				       PPCTL_SVC_UNIQUE_ID | PPCTL_SVC_CRC32C);
	if (fwd->hdr_flags & PPCTL_SVC_UNIQUE_ID)
		fwd->unique_id = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
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
	__u64 now = bpf_ktime_get_coarse_ns();
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
	struct ppctl_stats *stats = stats_get();
	__u64 now;

	if (parse_or_count(skb, &p, stats) != PARSE_OK)
		return TC_ACT_OK;

	now = bpf_ktime_get_coarse_ns();
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
 * one test, other local packets after one lookup. The lookup is by tuple, not by
 * socket, so that what the kernel sends for a connection from elsewhere (a
 * TIME_WAIT ack or a reset, from the namespace's control socket) is translated
 * too. Replies come in through ppctl_tc_ingress, which finds their REPLY entries. */
SEC("tc")
int ppctl_tc_egress(struct __sk_buff *skb)
{
	struct packet p = {};
	struct ppctl_ct_entry *e;
	struct ppctl_stats *stats;
	__u64 now;

	if (!skb->sk)
		return TC_ACT_OK;
	stats = stats_get();
	if (parse_or_count(skb, &p, stats) != PARSE_OK)
		return TC_ACT_OK;

	now = bpf_ktime_get_coarse_ns();
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
