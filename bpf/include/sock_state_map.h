/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* sock_state_map.h: what the socket path remembers about a local client's socket.
 * lb_sock.bpf.c writes it at connect; tc egress reads it to put the header of a
 * PROXY service on the handshake ACK. */
#ifndef PPCTL_SOCK_STATE_MAP_H
#define PPCTL_SOCK_STATE_MAP_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ppctl_abi.h"

/* Per socket: the VIP it asked for and the header it still owes. Lives and dies
 * with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ppctl_sock_state);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ppctl_sock_state SEC(".maps");

#endif /* PPCTL_SOCK_STATE_MAP_H */
