/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ct_map.h: the connection tracking map. The tc datapath owns it (conntrack.h);
 * the socket path reads it to know a local client's connection is tracked. Keys
 * and values are defined in ppctl_abi.h. */
#ifndef PPCTL_CT_MAP_H
#define PPCTL_CT_MAP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ppctl_abi.h"

/* Two entries per connection; the loader sets max_entries from --max-conns. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * PPCTL_DEFAULT_MAX_CONNS);
	__type(key, struct ppctl_ct_key);
	__type(value, struct ppctl_ct_entry);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_conntrack SEC(".maps");

#endif /* PPCTL_CT_MAP_H */
