/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* service_maps.h: the maps both paths read (tc for remote clients, the cgroup
 * programs for local ones): services, their Maglev tables, TLVs, backends and the
 * configuration, pinned by name so that a service added once serves both. Also the
 * per-CPU scratch buffer the PROXY header is built in, and the endpoint choice. */
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

/* A service's Maglev table (ppctl_abi.h): created by the control plane at the size
 * it chose (BPF_F_INNER_MAP: tables of any size fit the outer map) and filled
 * through mmap (BPF_F_MMAPABLE: one copy, not a system call per element). This
 * definition is the template the outer map checks them against; max_entries is not
 * used. */
struct ppctl_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	/* By size: the struct's BTF is only a forward declaration in the object. */
	__uint(value_size, sizeof(struct ppctl_maglev_slots));
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, PPCTL_MAX_SERVICES);
	__type(key, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct ppctl_maglev_table);
} ppctl_maglev SEC(".maps");

/* The instance's settings: timeouts and SNAT ports for tc, the flow hash's seed for
 * both paths. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_config_v3 SEC(".maps");

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

static __always_inline struct ppctl_config *config_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&ppctl_config_v3, &zero);
}

/* MARK: - Endpoint choice */

static __always_inline __u32 rotl32(__u32 x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 murmur3_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

/* The flow hash of a new connection: MurmurHash3 (x86, 32 bits) of the tuple the
 * client sent, seeded with the configuration's hash_seed. The ten words are the key's
 * addresses and ports as stored (network order, read as little-endian u32), then
 * family | proto << 8. Deterministic (not the kernel's skb hash, which is seeded at
 * random per boot), so that balancers with the same seed agree; Sources/Balancer/
 * FlowHash.swift computes the same function. Run once per SYN (or connect()). */
static __noinline __u32 flow_hash(const struct ppctl_ct_key *k, __u32 seed)
{
	const __u32 *w;
	__u32 h = seed;
	int i;

	if (!k)
		return 0;
	w = (const __u32 *)k;
#pragma unroll
	for (i = 0; i < 9; i++)
		h = murmur3_word(h, w[i]);
	h = murmur3_word(h, (__u32)k->family | (__u32)k->proto << 8);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* The endpoint choice both paths make: slot hash % M of the service's Maglev table.
 * Returns the backend and its id, or NULL if the service cannot take the connection
 * (no backends, no table, a PPCTL_MAGLEV_NONE slot: every backend down, or the
 * slot's backend is of another family or being replaced). */
static __always_inline struct ppctl_backend *pick_backend(const struct ppctl_service *svc,
							  __u32 hash, __u8 family, __u32 *id)
{
	struct ppctl_maglev_head *head;
	struct ppctl_maglev_slots *slots;
	struct ppctl_backend *be;
	__u32 key = 0, slot, index;
	void *table;

	if (svc->backend_count == 0)
		return NULL;
	table = bpf_map_lookup_elem(&ppctl_maglev, &svc->id);
	if (!table)
		return NULL;
	head = bpf_map_lookup_elem(table, &key);
	if (!head || head->size == 0)
		return NULL;
	slot = hash % head->size;
	key = 1 + slot / PPCTL_MAGLEV_SLOTS_PER_ELEM;
	slots = bpf_map_lookup_elem(table, &key);
	if (!slots)
		return NULL;
	index = slots->backend[slot & (PPCTL_MAGLEV_SLOTS_PER_ELEM - 1)];
	if (index == PPCTL_MAGLEV_NONE)
		return NULL;
	*id = PPCTL_BACKEND_ID(svc->id, index);
	be = bpf_map_lookup_elem(&ppctl_backends, id);
	if (!be || be->family != family || be->service_id != svc->id)
		return NULL;
	return be;
}

#endif /* PPCTL_SERVICE_MAPS_H */
