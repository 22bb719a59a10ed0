/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* fault_abi.h: the rules of the test fault injector, shared with the Swift tests. */
#ifndef PPCTL_FAULT_ABI_H
#define PPCTL_FAULT_ABI_H

#include <linux/types.h>

#define FAULT_MAX_RULES 8

#define FAULT_NONE      0
#define FAULT_DROP      1
#define FAULT_DUPLICATE 2
#define FAULT_COUNT     3     /* count and let it pass */

#define FAULT_PAYLOAD_ANY  0
#define FAULT_PAYLOAD_SOME 1
#define FAULT_PAYLOAD_NONE 2

struct fault_rule {
	__u16 sport;        /* network order; 0 = any */
	__u16 dport;        /* network order; 0 = any */
	__u8 flags_mask;    /* TCP flags byte: (flags & mask) == value */
	__u8 flags_value;
	__u8 payload;       /* FAULT_PAYLOAD_* */
	__u8 action;        /* FAULT_* */
	__u32 match_seq;    /* 1: only the segment whose seq (host order) is `seq` */
	__u32 seq;
	__u32 nth;          /* act on the nth matching segment (1-based)... */
	__u32 times;        /* ...and on the times-1 matches after it */
	__u32 seen;         /* written by the program: matches so far */
	__u32 applied;      /* written by the program: actions taken */
};

#endif /* PPCTL_FAULT_ABI_H */
