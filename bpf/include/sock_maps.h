/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* sock_maps.h: the maps only the socket path (bpf/lb_sock.bpf.c) has, pinned by
 * name next to the others so that an upgrade keeps what live sockets need. The
 * socket state, which tc egress reads too, is in sock_state_map.h. */
#ifndef PPCTL_SOCK_MAPS_H
#define PPCTL_SOCK_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ppctl_abi.h"
#include "sock_state_map.h"

/* Sockets whose first send must carry the header: the sk_msg program runs on
 * their sends only while they are in here. Keyed by socket cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_sockhash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_sock_config);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_sock_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ppctl_sock_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_sock_stats SEC(".maps");

#endif /* PPCTL_SOCK_MAPS_H */
