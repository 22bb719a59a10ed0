/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* csum.h: Internet checksum arithmetic.
 *
 * All sums are ones' complement sums of 16-bit words taken over raw memory, as
 * the kernel's csum_partial() does, so values are used exactly as loaded from
 * the packet (no byte swapping). A "diff" is what turns an old sum into a new
 * one: for a replaced 32-bit word, ~old + new.
 *
 * TCP checksums are updated through bpf_l4_csum_replace() because only the
 * kernel knows whether the skb is CHECKSUM_PARTIAL (the field then holds the
 * pseudo-header sum only and the payload is summed at transmit time) or carries a
 * full checksum. The helper applies a diff flagged BPF_F_PSEUDO_HDR in both
 * cases and a plain diff only to full checksums, which is exactly right:
 * address and length changes touch the pseudo header, everything else does not.
 */
#ifndef PPCTL_CSUM_H
#define PPCTL_CSUM_H

#include <linux/types.h>

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

#endif /* PPCTL_CSUM_H */
