/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* csum.h: Internet checksum arithmetic.
 *
 * All sums are ones' complement sums of 16-bit words taken over raw memory, as
 * the kernel's csum_partial() does, so values are used exactly as loaded from
 * the packet (no byte swapping). A "diff" is what turns an old sum into a new
 * one: for a replaced 32-bit word, ~old + new.
 *
 * A TCP checksum field means one of two things, and only the kernel's sk_buff
 * says which (skb_ip_summed() reads it): with CHECKSUM_PARTIAL the field holds the
 * pseudo-header sum only and the rest is summed at transmit time, so only address
 * and length changes (pseudo header) touch it; otherwise it is the full checksum
 * and every change does. csum_tcp_update() applies a rewrite's diffs for both,
 * in the packet, without a helper call; for CHECKSUM_COMPLETE, where skb->csum
 * must follow too, it leaves the work to bpf_l4_csum_replace().
 */
#ifndef PPCTL_CSUM_H
#define PPCTL_CSUM_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

static __always_inline __u32 csum_add(__u32 sum, __u32 addend)
{
	sum += addend;
	return sum + (sum < addend);
}

/* Diff for replacing the 32-bit word `from` with `to`. */
static __always_inline __u32 csum_diff32(__u32 from, __u32 to)
{
	return csum_add(~from, to);
}

/* Folds a 32-bit sum to 16 bits, without complementing. */
static __always_inline __u16 csum_fold_nocomp(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Applies a diff to a stored checksum field (csum_replace_by_diff). */
static __always_inline __u16 csum_apply_diff(__u16 check, __u32 diff)
{
	return (__u16)~csum_fold_nocomp(csum_add(diff, (__u16)~check));
}

/* A sum that moved by an odd number of bytes has its bytes swapped. */
static __always_inline __u32 csum_shift(__u32 sum, __u32 offset)
{
	if (offset & 1)
		return (sum >> 8) | (sum << 24);
	return sum;
}

/* The kernel's sk_buff, as much of it as ppctl reads (CO-RE: the offset is the
 * running kernel's). */
struct sk_buff___ppctl {
	__u8 ip_summed:2;
} __attribute__((preserve_access_index));

extern void *bpf_cast_to_kern_ctx(void *ctx) __ksym;

#define PPCTL_CHECKSUM_NONE        0
#define PPCTL_CHECKSUM_UNNECESSARY 1
#define PPCTL_CHECKSUM_COMPLETE    2
#define PPCTL_CHECKSUM_PARTIAL     3

/* skb->ip_summed: what the TCP checksum field holds (see above). The cast is
 * free (the verifier turns it into a move); the read is one load. */
static __always_inline __u32 skb_ip_summed(struct __sk_buff *skb)
{
	struct sk_buff___ppctl *kskb = bpf_cast_to_kern_ctx(skb);

	return BPF_CORE_READ_BITFIELD(kskb, ip_summed);
}

/* The TCP checksum field after a rewrite whose pseudo-header part changed the
 * sum by pseudo_diff and whose other fields by l4_diff, for an skb whose
 * ip_summed is not CHECKSUM_COMPLETE: what inet_proto_csum_replace_by_diff()
 * computes, without the two helper calls. */
static __always_inline __u16 csum_tcp_update(__u16 check, __u32 ip_summed, __u32 pseudo_diff,
					     __u32 l4_diff)
{
	if (ip_summed == PPCTL_CHECKSUM_PARTIAL)
		return csum_fold_nocomp(csum_add(pseudo_diff, check));
	return csum_apply_diff(check, csum_add(pseudo_diff, l4_diff));
}

#endif /* PPCTL_CSUM_H */
