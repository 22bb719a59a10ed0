#ifndef PPCTL_DATAPATH_ABI_H
#define PPCTL_DATAPATH_ABI_H

/* The structs shared with the eBPF programs. */
#include "ppctl_abi.h"

/* MARK: - Shims for calls Swift cannot make directly */

/// Moves the calling thread into the network namespace at `path`
/// (e.g. /run/netns/NAME). Returns 0 or -errno.
int ppctl_enter_netns(const char *path);

/// Opens a socket inside the network namespace at `path` and returns it, leaving
/// the calling thread in the namespace it was in. The socket stays bound to that
/// namespace for its whole life. Returns the fd or -errno.
int ppctl_socket_in_netns(const char *path, int domain, int type, int protocol);

/// 1 if `path` is a mounted bpffs, 0 if not, -errno on error.
int ppctl_is_bpffs(const char *path);
/* 1 if path is on a cgroup v2 hierarchy, 0 if not, -errno if it cannot be read. */
int ppctl_is_cgroup2(const char *path);

/// Mounts bpffs at `path` (mode 0700). Returns 0 or -errno.
int ppctl_mount_bpffs(const char *path);

/// 1 if packets can leave through interface `name` with bpf_redirect_peer: it is a
/// veth or netkit device whose peer lives in another network namespace. 0 if not,
/// -errno on error.
int ppctl_iface_redirects_to_peer(const char *name);

#endif
