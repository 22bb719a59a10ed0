/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* maps.h: the maps only the tc datapath (bpf/lb_tc.bpf.c) has. The ones it shares
 * with the socket path are in service_maps.h, ct_map.h and sock_state_map.h, the
 * socket path's own in sock_maps.h: every map is defined once, and each object
 * carries the maps it uses. Maps are pinned by name under the instance's pin
 * directory, so that the control plane and later loads (upgrades) find the same
 * state. Keys and values are defined in ppctl_abi.h. */
#ifndef PPCTL_MAPS_H
#define PPCTL_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ppctl_abi.h"
#include "service_maps.h"
#include "ct_map.h"

struct bpf_map;  /* opaque: the callbacks of bpf_for_each_map_elem get one */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PPCTL_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct ppctl_iface);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_stats_v2 SEC(".maps");    /* ABI 2: struct ppctl_stats grew (was ppctl_stats) */

/* Counts a packet dropped because forwarding it failed: under its reason (a
 * dropped_*_error or dropped_no_route field of struct ppctl_stats) and in
 * fwd_errors, their sum. */
#define count_fwd_drop(stats, reason)				\
	do {							\
		if (stats) {					\
			(stats)->reason++;			\
			(stats)->fwd_errors++;			\
		}						\
	} while (0)

/* Counters per service (array by service id) and per backend (hash by backend id). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PPCTL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct ppctl_service_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_service_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PPCTL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct ppctl_backend_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_backend_stats SEC(".maps");

/* SNAT address pools: one per service, and the instance's default at
 * PPCTL_SNAT_POOL_DEFAULT. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PPCTL_MAX_SERVICES + 1);
	__type(key, __u32);
	__type(value, struct ppctl_snat_pool);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_snat_pools SEC(".maps");

/* The SNAT tuple a client's previous connection on the same tuple had: the
 * backend knows this client there (its TIME_WAIT accepts the client's next SYN),
 * so the new connection takes it again if it goes to the same backend. */
struct snat_hint {
	struct ppctl_addr addr;
	__u32 backend_id;
	__u16 port;                 /* network order; 0: no hint */
	__u16 pad;
};

/* Per-CPU: the hint for the SYN being handled (kept off the programs' stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct snat_hint);
} ppctl_hint SEC(".maps");

/* The conntrack sweeper's timer (armed by the first new connection). The control
 * plane sees PPCTL_GC_STATE_SIZE bytes it only ever zeroes (ppctl_abi.h). */
struct ppctl_gc_state {
	struct bpf_timer timer;
	__u32 armed;
	__u32 pad;
};
_Static_assert(sizeof(struct ppctl_gc_state) == PPCTL_GC_STATE_SIZE,
	       "ppctl_gc's value is PPCTL_GC_STATE_SIZE bytes for the control plane");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_gc_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_gc SEC(".maps");

#endif /* PPCTL_MAPS_H */
