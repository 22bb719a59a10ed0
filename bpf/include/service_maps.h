/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* service_maps.h: the maps both paths read (tc for remote clients, the cgroup
 * programs for local ones): services, their endpoint rings, TLVs and backends,
 * pinned by name so that a service added once serves both. Also the per-CPU
 * scratch buffer the PROXY header is built in. */
#ifndef PPCTL_SERVICE_MAPS_H
#define PPCTL_SERVICE_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ppctl_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PPCTL_MAX_SERVICES);
	__type(key, struct ppctl_service_key);
	__type(value, struct ppctl_service);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PPCTL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct ppctl_ring);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PPCTL_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct ppctl_service_tlvs);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_service_tlvs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PPCTL_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct ppctl_backend);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_backends SEC(".maps");

/* Per-CPU scratch space for rebuilding a segment (too big for the stack). */
struct ppctl_scratch {
	__u8 buf[PPCTL_MAX_HEADER_LEN];   /* the PROXY header */
	__u8 tcp[60];                     /* a copy of the TCP header, for its checksum */
	struct {                          /* the TCP pseudo header, IPv6 layout */
		struct ppctl_addr saddr, daddr;
		__be32 len;
		__u8 zero[3], proto;
	} pseudo;
	struct ppctl_ct_entry fwd;        /* the two entries of a new connection */
	struct ppctl_ct_entry rev;
	struct ppctl_ct_key tuple;        /* the tuple a local client's header names */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_scratch);
} ppctl_scratch SEC(".maps");

/* The endpoint choice both paths make: the ring slot `hash` falls in. Returns the
 * backend and its id, or NULL if the service cannot take the connection (no
 * backends, a PPCTL_RING_NONE slot: every backend down, or the slot's backend is
 * of another family or being replaced). */
static __always_inline struct ppctl_backend *pick_backend(const struct ppctl_service *svc,
							  __u32 hash, __u8 family, __u32 *id)
{
	struct ppctl_backend *be;
	struct ppctl_ring *ring;
	__u32 index;

	if (svc->backend_count == 0)
		return NULL;
	ring = bpf_map_lookup_elem(&ppctl_rings, &svc->id);
	if (!ring)
		return NULL;
	index = ring->backend[hash & (PPCTL_RING_SIZE - 1)];
	if (index == PPCTL_RING_NONE)
		return NULL;
	*id = PPCTL_BACKEND_ID(svc->id, index);
	be = bpf_map_lookup_elem(&ppctl_backends, id);
	if (!be || be->family != family || be->service_id != svc->id)
		return NULL;
	return be;
}

#endif /* PPCTL_SERVICE_MAPS_H */
