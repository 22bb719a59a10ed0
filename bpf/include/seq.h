/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* seq.h: sequence-number arithmetic of a stream with a header inserted at ISN+1.
 *
 * The balancer inserts hdr_len bytes at the client's ISN+1. In the backend's view
 * of the client's stream, byte N of the client sits at N + hdr_len, and bytes
 * [ISN+1, ISN+1+hdr_len) are the header. So:
 *   client -> backend:  seq' = seq + hdr_len                       (not on the SYN)
 *   backend -> client:  ack' = ack - hdr_len  when ack covers the whole header,
 *                       ack' = ISN+1          when it covers part of it (clamped:
 *                                             never ack what the client did not send)
 *   SACK blocks from the backend translate like acks; a block that lies inside the
 *   header says nothing about client data and the whole SACK option is turned into
 *   NOPs (SACK is advisory; the next segment carries fresh blocks).
 * All comparisons are modulo 2^32 (RFC 1982 serial arithmetic), which can only
 * order numbers less than 2^31 apart: once a connection has moved 2 GiB past its
 * ISN, "before ISN+1" and "after" look alike. So the comparisons with ISN+1 are made
 * only until the backend has acknowledged the whole header (PPCTL_CT_HDR_ACKED);
 * from then on every sequence number is past the header, however far the stream
 * has wrapped, and is translated without asking.
 */
#ifndef PPCTL_SEQ_H
#define PPCTL_SEQ_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "consts.h"
#include "csum.h"
#include "parse.h"

/* True if a is at or after b in sequence space. */
static __always_inline int seq_geq(__u32 a, __u32 b)
{
	return (__s32)(a - b) >= 0;
}

/* True if a is strictly after b. */
static __always_inline int seq_gt(__u32 a, __u32 b)
{
	return (__s32)(a - b) > 0;
}

/* True if seq lies within TCP_MAX_WINDOW of `edge` on either side: where a segment
 * of a sender whose stream reached `edge` can be (its retransmissions behind it,
 * what was lost before the balancer ahead of it). */
static __always_inline int seq_near(__u32 seq, __u32 edge)
{
	return (__u32)(seq - edge + TCP_MAX_WINDOW) <= 2 * TCP_MAX_WINDOW;
}

/* The sequence number after the segment: SYN and FIN count one each. */
static __always_inline __u32 seq_end(const struct packet *p)
{
	return p->seq + p->payload_len + !!(p->flags & TCPF_SYN) + !!(p->flags & TCPF_FIN);
}

/* Backend-side ack (host order) to the client's sequence space. `acked`: the
 * backend has acknowledged the whole header (see above). */
static __always_inline __u32 ack_to_client(__u32 ack, __u32 isn, __u32 hdr_len, __u32 acked)
{
	__u32 first = isn + 1;

	if (acked || seq_geq(ack, first + hdr_len))
		return ack - hdr_len;
	if (seq_geq(ack, first))
		return first;           /* part of the header: clamp */
	return ack;                 /* before ISN+1: not ours to judge, pass on */
}

/* Translates the SACK blocks of a backend -> client segment in place. Returns the
 * checksum diff of what it changed (0 if nothing). A global function: verified
 * once, not once per path of its caller. */
__noinline __u32 translate_sack(struct __sk_buff *skb, const struct packet *p,
				__u32 isn, __u32 hdr_len, __u32 acked)
{
	void *data, *data_end;
	__u32 l4_off, tcp_hlen;
	__u32 opt_off, opt_end;
	__u32 header_end = isn + 1 + hdr_len;
	__u32 diff = 0;
	__u32 i;

	if (!skb || !p)
		return 0;
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	l4_off = p->l4_off & L4_OFF_MASK;
	tcp_hlen = p->tcp_hlen;
	/* Bounds parse_packet (parse.h) guarantees, stated again for the verifier,
	 * which does not carry them through struct packet. */
	if (l4_off > ETH_HLEN + IPV6_HLEN_MAX || tcp_hlen > TCP_HLEN_MAX ||
	    tcp_hlen <= TCP_HLEN_MIN)
		return 0;
	opt_off = l4_off + TCP_HLEN_MIN;
	opt_end = l4_off + tcp_hlen;
	/* The common layout: NOP NOP TIMESTAMP and nothing else. */
	if (tcp_hlen == TCP_HLEN_MIN + 12) {
		__u32 *first = data + opt_off;
		if ((void *)(first + 1) <= data_end && *first == TCPOPT_NOP_NOP_TS)
			return 0;
	}

	for (i = 0; i < TCP_HLEN_MAX - TCP_HLEN_MIN; i++) {
		__u8 *opt = data + opt_off;
		__u8 kind, len;
		__u32 blocks, b, inside = 0;

		if (opt_off >= opt_end || (void *)(opt + 2) > data_end)
			break;
		kind = opt[0];
		if (kind == TCPOPT_EOL)
			break;
		if (kind == TCPOPT_NOP) {
			opt_off++;
			continue;
		}
		len = opt[1];
		if (len < 2 || opt_off + len > opt_end)
			break;
		if (kind != TCPOPT_SACK) {
			opt_off += len;
			continue;
		}

		blocks = (len - 2) / TCPOPT_SACK_BLOCK;
		for (b = 0; b < TCPOPT_SACK_MAX_BLOCKS; b++) {
			__u8 *edge = opt + 2 + b * TCPOPT_SACK_BLOCK;
			__u32 left, right;

			if (b >= blocks || (void *)(edge + TCPOPT_SACK_BLOCK) > data_end)
				break;
			__builtin_memcpy(&left, edge, 4);
			__builtin_memcpy(&right, edge + 4, 4);
			/* Blocks lie above the cumulative ack: once it has passed the
			 * header, none can be inside it. */
			if (!acked && !seq_geq(bpf_ntohl(right), header_end + 1))
				inside = 1;
		}
		if (inside) {
			/* Blank the option: NOPs keep the header length. */
			for (b = 0; b < 2 + TCPOPT_SACK_MAX_BLOCKS * TCPOPT_SACK_BLOCK; b++) {
				__u8 old;

				if (b >= len || (void *)(opt + b + 1) > data_end)
					break;
				old = opt[b];
				opt[b] = TCPOPT_NOP;
				diff = csum_add(diff, csum_shift(csum_diff32(old, TCPOPT_NOP),
								 opt_off + b - l4_off));
			}
			return diff;
		}
		for (b = 0; b < TCPOPT_SACK_MAX_BLOCKS; b++) {
			__u8 *edge = opt + 2 + b * TCPOPT_SACK_BLOCK;
			__u32 at = opt_off + 2 + b * TCPOPT_SACK_BLOCK - l4_off;
			__u32 old[2], new[2];

			if (b >= blocks || (void *)(edge + TCPOPT_SACK_BLOCK) > data_end)
				break;
			__builtin_memcpy(old, edge, 8);
			new[0] = bpf_htonl(ack_to_client(bpf_ntohl(old[0]), isn, hdr_len, acked));
			new[1] = bpf_htonl(ack_to_client(bpf_ntohl(old[1]), isn, hdr_len, acked));
			__builtin_memcpy(edge, new, 8);
			diff = csum_add(diff, csum_shift(csum_diff32(old[0], new[0]), at));
			diff = csum_add(diff, csum_shift(csum_diff32(old[1], new[1]), at));
		}
		return diff;
	}
	return diff;
}

#endif /* PPCTL_SEQ_H */
