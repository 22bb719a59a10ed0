#ifndef PPCTL_DATAPATH_SKELETONS_H
#define PPCTL_DATAPATH_SKELETONS_H

/* The libbpf skeletons of the datapath's objects (`bpftool gen skeleton`, checked
 * by bpf/build.sh against the objects it compiles): `skel->progs.NAME` and
 * `skel->maps.NAME` are the programs and maps, by field. The skeletons carry no
 * object bytes: the Swift package embeds each object once (BPFObjectBytes), and
 * the functions below put it in the skeleton before libbpf opens it. */
#include <stddef.h>
#include "lb_tc.skel.h"
#include "lb_sock.skel.h"

/// Opens a skeleton that NAME__create_skeleton filled, over the object `obj`
/// (`len` bytes, read during the call only), with maps pinned by name under
/// `pin_root` (NULL: libbpf's default). Returns 0 or -errno.
int ppctl_skeleton_open(struct bpf_object_skeleton *skeleton, const void *obj, size_t len,
			const char *pin_root);

/// The tc datapath (bpf/lb_tc.bpf.c) opened over `obj`, not loaded yet: load it
/// with lb_tc__load, free it with lb_tc__destroy. NULL with errno set on failure.
struct lb_tc *ppctl_tc_open(const void *obj, size_t len, const char *pin_root);

/// The socket path (bpf/lb_sock.bpf.c), as ppctl_tc_open; lb_sock__load,
/// lb_sock__destroy.
struct lb_sock *ppctl_sock_open(const void *obj, size_t len, const char *pin_root);

#endif
