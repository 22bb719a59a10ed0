/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ppctl_abi.h: everything that crosses the boundary between the eBPF programs
 * and the Swift control plane. Map keys, map values, flags and limits are
 * defined here once; the Swift side imports this header through the
 * DatapathABI module, the programs include it directly.
 *
 * Conventions
 * - Addresses are 16 bytes. An IPv4 address sits in the first 4 bytes (network
 *   order) and the other 12 are zero; `family` says which one it is.
 * - Ports are stored in network byte order, as on the wire.
 * - Every struct is padded explicitly so that its size and layout are the same
 *   for clang -target bpf and for the host compiler.
 */
#ifndef PPCTL_ABI_H
#define PPCTL_ABI_H

#include <linux/types.h>

/* MARK: - Version */

/* The layout of the pinned maps, recorded in ppctl_config.abi_version by every
 * attach. A change to a map's key or value bumps it and gives that map a new pin
 * name (ppctl_conntrack_v2, after Cilium), so that an attach can migrate the old
 * map's entries (docs/architecture.md, "State and its owners"). A build refuses
 * pins recorded by a newer one. */
#define PPCTL_ABI_VERSION 3

/* The history, newest first (each with its migration, Sources/Datapath/Migration.swift):
 *   3  endpoint choice by Maglev: the 256-slot ppctl_rings became ppctl_maglev (a
 *      map of per-service tables of any size); struct ppctl_config gained
 *      hash_seed, its map is pinned as ppctl_config_v3. The tables are rebuilt
 *      from services and backends at attach; the old rings are dropped.
 *   2  struct ppctl_stats: fwd_errors split into named drop and pass reasons,
 *      appended; its map is pinned as ppctl_stats_v2. */

/* MARK: - Limits */

#define PPCTL_MAX_SERVICES      16384
/* Backends of all services together; a service has at most PPCTL_MAX_SERVICE_BACKENDS. */
#define PPCTL_MAX_BACKENDS      131072
/* Backends of one service: a backend id holds its index in 8 bits, and a Maglev
 * slot holds it in 16 (PPCTL_MAGLEV_NONE is not an index). */
#define PPCTL_MAX_SERVICE_BACKENDS 256
/* Default number of connections the conntrack map holds (two entries each). */
#define PPCTL_DEFAULT_MAX_CONNS 131072
/* Attached interfaces the control plane remembers. */
#define PPCTL_MAX_IFACES        64
/* Addresses in one SNAT pool (a service's, or the instance's default). */
#define PPCTL_MAX_SNAT_ADDRS    16
/* Longest PROXY header a connection can carry (v2 fixed part + TLVs). */
#define PPCTL_MAX_HEADER_LEN    256
/* Longest run of pre-encoded TLVs a service can add to its v2 headers: what is left
 * of PPCTL_MAX_HEADER_LEN after the IPv6 fixed part (PPCTL_PP2_HEADER_LEN +
 * PPCTL_PP2_ADDR_LEN_IPV6), a UNIQUE_ID TLV and a CRC32C TLV, rounded down to keep
 * struct ppctl_service_tlvs a multiple of 8 bytes (checked at the end). */
#define PPCTL_MAX_SERVICE_TLV_LEN 176

/* MARK: - PROXY protocol sizes (HAProxy's proxy-protocol.txt) */

/* v2: the fixed part (signature, version/command, family, length), then the
 * addresses and ports of the family. */
#define PPCTL_PP2_HEADER_LEN        16
#define PPCTL_PP2_ADDR_LEN_IPV4     12
#define PPCTL_PP2_ADDR_LEN_IPV6     36
/* A TLV's type and big-endian length, before its value. */
#define PPCTL_PP2_TLV_HLEN          3
#define PPCTL_PP2_UNIQUE_ID_LEN     16  /* 64 random bits as lowercase hex */
#define PPCTL_PP2_CRC32C_LEN        4
/* Whole TLVs as the datapath writes them. */
#define PPCTL_PP2_UNIQUE_ID_TLV_LEN 19  /* PPCTL_PP2_TLV_HLEN + PPCTL_PP2_UNIQUE_ID_LEN */
#define PPCTL_PP2_CRC32C_TLV_LEN    7   /* PPCTL_PP2_TLV_HLEN + PPCTL_PP2_CRC32C_LEN */
/* v1 (section 2.1): the longest line of each family, and of any header. */
#define PPCTL_PP1_MAX_LEN_IPV4      56  /* "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n" */
#define PPCTL_PP1_MAX_LEN_IPV6      104
#define PPCTL_PP1_MAX_LEN           107

/* MARK: - Address families and protocols (as stored in keys) */

#define PPCTL_FAMILY_IPV4 4
#define PPCTL_FAMILY_IPV6 6
#define PPCTL_PROTO_TCP   6

struct ppctl_addr {
	__u32 w[4];                 /* network order; IPv4 in w[0] */
};

/* MARK: - Services (map "ppctl_services") */

struct ppctl_service_key {
	struct ppctl_addr vip;
	__u16 port;                 /* network order */
	__u8 family;
	__u8 proto;
};

/* Service flags. */
#define PPCTL_SVC_PROXY_V2   (1u << 0)  /* write a PROXY v2 header towards the backend */
#define PPCTL_SVC_PROXY_V1   (1u << 1)  /* write a PROXY v1 text header */
#define PPCTL_SVC_SNAT_POOL  (1u << 2)  /* SNAT from the service's pool (ppctl_snat_pools[id]) */
#define PPCTL_SVC_UNIQUE_ID  (1u << 3)  /* v2: add a UNIQUE_ID TLV, new for every connection */
#define PPCTL_SVC_CRC32C     (1u << 4)  /* v2: add a CRC32C TLV computed over the header */
/* Recorded for the control plane (`--server-first`, listed and kept by reconciles);
 * the programs ignore it. It once chose the header at tc egress for local clients,
 * which every header service now gets where tc egress is attached. */
#define PPCTL_SVC_SERVER_FIRST (1u << 5)

struct ppctl_service {
	__u32 id;                   /* index into ppctl_maglev, ppctl_service_tlvs, ppctl_snat_pools */
	__u32 flags;                /* PPCTL_SVC_* */
	__u16 backend_count;        /* 0: the service refuses new connections */
	__u16 owner;                /* who manages it (ServiceOwner): 0 ppctl, 1 ppctld; the datapath ignores it */
	/* The service's Maglev table size when set by hand (`--table-size`), 0: the
	 * size that follows from backend_count (Maglev.tableSize). For the control
	 * plane; the datapath reads the size from the table itself. */
	__u32 table_size;
};

/* MARK: - SNAT pools (map "ppctl_snat_pools", array) */

/* Index PPCTL_SNAT_POOL_DEFAULT is the instance's default pool (`attach --snat`);
 * index N is service N's own (PPCTL_SVC_SNAT_POOL). A connection's SNAT address is
 * the service's pool, else the default pool, else the route's source address. */
#define PPCTL_SNAT_POOL_DEFAULT PPCTL_MAX_SERVICES

struct ppctl_snat_pool {
	__u32 count;                /* addresses used in `addr`; 0: no pool */
	__u32 reserved;
	struct ppctl_addr addr[PPCTL_MAX_SNAT_ADDRS];
};

/* MARK: - Maglev tables (map "ppctl_maglev", array of maps indexed by service id) */

/*
 * Each service with backends has its own table, an inner BPF array
 * (BPF_F_INNER_MAP | BPF_F_MMAPABLE) the control plane creates at the size it chose
 * (a prime, Maglev.tableSize), fills, and then swaps into ppctl_maglev[service id]
 * with one update: the datapath sees the old table or the new one, never a mix. A
 * table of size 0 (header only) is no table: a removed service's slot may point at
 * one. Element 0 is the header (struct ppctl_maglev_head: the
 * table's size M, so that size and slots change together); slot i (0 <= i < M) is
 * backend[i % 4] of element 1 + i / 4. A slot holds the index (0..255) of one of the
 * service's backends, or PPCTL_MAGLEV_NONE: every backend is down or draining (a
 * table of only those refuses new connections, as backend_count 0 does).
 * The endpoint of a new connection is slot[flow_hash(tuple, hash_seed) % M].
 * (Array elements are 8 bytes at least: four u16 slots per element use them all.)
 */
#define PPCTL_MAGLEV_NONE            0xffffu
#define PPCTL_MAGLEV_SLOTS_PER_ELEM  4
/* The largest table the datapath accepts (a prime; per-service `--table-size`). */
#define PPCTL_MAGLEV_MAX_SIZE        131071

struct ppctl_maglev_head {
	__u32 size;                 /* M: slots in the table */
	__u32 reserved;
};

struct ppctl_maglev_slots {
	__u16 backend[PPCTL_MAGLEV_SLOTS_PER_ELEM];
};

/* MARK: - Service TLVs (map "ppctl_service_tlvs", array indexed by service id) */

/* TLVs every v2 header of the service carries (custom 0xE0-0xEF, AWS, Azure,
 * GCP...), encoded by the control plane: type, length (big-endian), value. */
struct ppctl_service_tlvs {
	__u16 len;                  /* bytes used in `bytes` */
	__u16 reserved[3];
	__u8 bytes[PPCTL_MAX_SERVICE_TLV_LEN];
};

/* MARK: - Backends (map "ppctl_backends", hash keyed by backend id) */

/* A backend's id is its service's id and its index in the service (the values the
 * Maglev slots hold): no allocator needed. */
#define PPCTL_BACKEND_ID(service_id, index) (((service_id) << 8) | ((index) & 0xff))

struct ppctl_backend {
	struct ppctl_addr addr;
	__u16 port;                 /* network order */
	__u8 family;
	__u8 flags;                 /* reserved */
	__u32 service_id;           /* owner, for the control plane's bookkeeping */
	__u32 weight;
	__u32 reserved;
};

/* MARK: - Connection tracking (map "ppctl_conntrack") */

/*
 * Every connection has two entries: one keyed by the tuple the client sends
 * (client -> VIP, direction ORIGINAL) and one keyed by the tuple the backend
 * sends (backend -> SNAT address, direction REPLY). Each entry says how to
 * rewrite the packets that match it, and carries a copy of the connection's
 * sequence state, so that either direction is translated with one lookup.
 */
struct ppctl_ct_key {
	struct ppctl_addr saddr;
	struct ppctl_addr daddr;
	__u16 sport;                /* network order */
	__u16 dport;                /* network order */
	__u8 family;
	__u8 proto;
	__u8 pad[2];
};

#define PPCTL_DIR_ORIGINAL 0    /* client -> backend */
#define PPCTL_DIR_REPLY    1    /* backend -> client */

/* Connection state bits, kept identical in both entries of a connection. */
#define PPCTL_CT_SYN_ACK_SEEN  (1u << 0)  /* the backend answered the SYN */
#define PPCTL_CT_ESTABLISHED   (1u << 1)  /* the client completed the handshake */
#define PPCTL_CT_FIN_CLIENT    (1u << 2)
#define PPCTL_CT_FIN_BACKEND   (1u << 3)
#define PPCTL_CT_RST           (1u << 4)
#define PPCTL_CT_HDR_SENT      (1u << 5)  /* the PROXY header went out at least once */
#define PPCTL_CT_HDR_ACKED     (1u << 6)  /* the backend acknowledged the whole header */
/* The backend closed first, so it holds the SNAT tuple in TIME_WAIT: no other client
 * connection may have the tuple until timeout_time_wait has passed. */
#define PPCTL_CT_TIME_WAIT     (1u << 7)

/* Per-direction bits, in dir_flags (not mirrored). */
#define PPCTL_CT_L_FWD_CACHED  (1u << 0)  /* ifindex/smac/dmac are valid */
#define PPCTL_CT_L_DATA_SEEN   (1u << 1)  /* client data at ISN+1 went out once */
#define PPCTL_CT_L_PEER        (1u << 2)  /* egress is a veth: bpf_redirect_peer */
/* A local client's connection to a PROXY service (socket path, header at tc egress):
 * no address is rewritten, packets go on through the stack, only seq/ack/SACK move. */
#define PPCTL_CT_L_LOCAL       (1u << 3)

struct ppctl_ct_entry {
	/* Rewrite for packets matching the key. */
	struct ppctl_addr nat_saddr;
	struct ppctl_addr nat_daddr;
	__u16 nat_sport;            /* network order */
	__u16 nat_dport;            /* network order */
	__u8 dir;                   /* PPCTL_DIR_* */
	__u8 dir_flags;             /* PPCTL_CT_L_* for this direction only */
	__u8 family;                /* of the key (and of the rewrite: no mixed families) */
	__u8 pad1;
	__u32 state;                /* PPCTL_CT_* (mirrored in both entries, set atomically) */

	/* Sequence state: the client's ISN (host order) and the number of bytes
	 * the balancer inserted at ISN+1 (the PROXY header length; 0 for plain
	 * services). Client->backend seq += hdr_len; backend->client ack and
	 * SACK -= hdr_len. */
	__u32 client_isn;
	__u16 hdr_len;
	__u16 hdr_flags;            /* PPCTL_SVC_PROXY_* | UNIQUE_ID | CRC32C: how to rebuild it */

	__u32 service_id;
	__u32 backend_id;

	/* Forwarding decision cached at the first packet of this direction. */
	__u32 ifindex;
	__u8 smac[6];
	__u8 dmac[6];
	/* The backend's ISN, from its SYN-ACK (mirrored in both entries). */
	__u32 backend_isn;

	__u64 created_ns;           /* bpf_ktime_get_coarse_ns() */
	__u64 last_seen_ns;         /* refreshed at most once per second */
	/* Value of the connection's UNIQUE_ID TLV (sent as 16 lowercase hex digits),
	 * 0 if the service does not send one. */
	__u64 unique_id;
	/* The sequence number that follows the last one this direction's sender sent
	 * (host order, in the sender's own space): where a valid RST must be, and the
	 * upper edge of what the other side may acknowledge. */
	__u32 snd_end;
	__u32 pad2;
	/* What this entry translated (its direction only): folded into the backend's
	 * ppctl_backend_stats when the connection's entries are removed. Plain adds on
	 * the entry the packet already touched; a flow's packets of one direction
	 * arrive on one CPU. */
	__u64 packets;
	__u64 bytes;
};

/* MARK: - Configuration (map "ppctl_config_v3", one element at key 0) */

struct ppctl_config {
	__u16 snat_port_min;        /* host order, inclusive */
	__u16 snat_port_max;        /* host order, inclusive */
	/* The namespace's own ephemeral ports (ip_local_port_range, inclusive): kept
	 * free on a SNAT address that is the route's source, which the host's own
	 * sockets share. Pool addresses get the whole SNAT range. */
	__u16 local_port_min;
	__u16 local_port_max;
	/* Idle timeouts in seconds. */
	__u32 timeout_syn;          /* handshake not completed */
	__u32 timeout_established;
	__u32 timeout_fin;          /* one side sent FIN */
	__u32 timeout_close;        /* both sides sent FIN, the client first */
	__u32 timeout_rst;
	__u32 gc_interval;          /* seconds between conntrack sweeps */
	__u32 timeout_time_wait;    /* both sides sent FIN, the backend first (its TIME_WAIT) */
	__u32 abi_version;          /* PPCTL_ABI_VERSION of the last attach (0: before it existed); not read by the programs */
	/* Since ABI 3: mixed into the flow hash and into every backend's Maglev
	 * permutation (`attach --hash-seed`). Balancers with the same seed and the same
	 * services choose the same backend for a tuple. */
	__u32 hash_seed;
	__u32 reserved;
};

#define PPCTL_DEFAULT_SNAT_PORT_MIN  1024
#define PPCTL_DEFAULT_SNAT_PORT_MAX  65535
#define PPCTL_DEFAULT_LOCAL_PORT_MIN 32768  /* Linux's default ip_local_port_range */
#define PPCTL_DEFAULT_LOCAL_PORT_MAX 60999
#define PPCTL_DEFAULT_TIMEOUT_SYN    30
#define PPCTL_DEFAULT_TIMEOUT_EST    7440   /* 2 h keepalive + 4 min */
#define PPCTL_DEFAULT_TIMEOUT_FIN    120
#define PPCTL_DEFAULT_TIMEOUT_CLOSE  10
#define PPCTL_DEFAULT_TIMEOUT_RST    2
#define PPCTL_DEFAULT_GC_INTERVAL    2
#define PPCTL_DEFAULT_TIMEOUT_TIME_WAIT 62  /* Linux's TCP_TIMEWAIT_LEN (60 s) + 2 s */

/* MARK: - Attached interfaces (map "ppctl_ifaces", key: ifindex) */

/* The interface is a veth (or netkit): packets leaving through it are handed
 * straight to its peer's ingress (bpf_redirect_peer), skipping its egress path. */
#define PPCTL_IFACE_PEER       (1u << 0)

struct ppctl_iface {
	char name[16];
	__u32 flags;                /* PPCTL_IFACE_* */
	__u32 reserved;
};

/* MARK: - Statistics (map "ppctl_stats_v2", per-CPU array, one element at key 0) */

/* Every packet the tc programs drop or pass untouched for a reason other than "not
 * ppctl's" is counted under its reason (after Cilium's drop reasons): dropped_* and
 * refused_* (a RST was sent) fields for drops, passed_* for passes. */
struct ppctl_stats {
	__u64 packets_to_backend;
	__u64 bytes_to_backend;
	__u64 packets_to_client;
	__u64 bytes_to_client;
	__u64 connections;          /* new connections accepted */
	__u64 headers_injected;     /* first transmission of a PROXY header */
	__u64 headers_resent;       /* header sent again because it was not yet acknowledged */
	__u64 data_split;           /* client data that arrived before the header went out */
	__u64 tfo_trimmed;          /* data carried on a SYN, removed */
	__u64 refused_no_backend;   /* SYN to a service without backends */
	__u64 refused_table_full;   /* SYN refused: conntrack table full */
	__u64 dropped_no_conn;      /* non-SYN to a service without a connection entry */
	__u64 passed_unparsed;      /* IP/TCP that failed to parse (malformed, fragment): to the stack untouched */
	__u64 conns_reused;         /* SYN with a new ISN on a tuple still tracked */
	__u64 gc_expired;           /* entries removed by the sweeper */
	__u64 fwd_errors;           /* the sum of the four dropped_*_error and dropped_no_route below */
	__u64 refused_snat_exhausted; /* SYN refused: every SNAT tuple towards the backend in use */
	__u64 dropped_out_of_window; /* segment outside the connection's window: dropped */
	__u64 ignored_rst;          /* RST not at the sender's next sequence: passed, state kept */
	__u64 resets_sent;          /* RSTs the balancer sent to refuse a SYN */
	/* Since ABI 2: what fwd_errors counted, by reason. */
	__u64 dropped_rewrite_error; /* rewriting addresses, ports, seq/ack or checksums failed (a helper refused) */
	__u64 dropped_header_error; /* the PROXY header could not be built or written (e.g. the service's TLVs changed under a live connection) */
	__u64 dropped_no_route;     /* SYN to a service whose backend has no route (or no source address for SNAT) */
	__u64 dropped_redirect_error; /* bpf_redirect* or bpf_clone_redirect refused the packet (or a data clone) */
	__u64 passed_local_untracked; /* local client's SYN passed without a conntrack entry (table full): the header falls back to sk_msg */
};

/* MARK: - Per-service and per-backend counters */

/* "ppctl_service_stats": per-CPU array indexed by service id. Counted at events
 * (a SYN, a header), never per data packet. */
struct ppctl_service_stats {
	__u64 connections;
	__u64 headers_injected;
	__u64 headers_resent;
	__u64 refused_no_backend;
	__u64 refused_table_full;
	__u64 refused_snat_exhausted;
};

/* "ppctl_backend_stats": per-CPU hash keyed by backend id (PPCTL_BACKEND_ID).
 * connections counts those the backend was given; the traffic fields hold what
 * its *finished* connections carried (a live connection's is in its conntrack
 * entries: the control plane adds the two). */
struct ppctl_backend_stats {
	__u64 connections;
	__u64 packets_to_backend;
	__u64 bytes_to_backend;
	__u64 packets_to_client;
	__u64 bytes_to_client;
};

/* MARK: - The conntrack sweeper (map "ppctl_gc", one element at key 0) */

/* Its value holds the sweeper's struct bpf_timer, which only the programs can use:
 * bpf/include/tc_maps.h defines it (struct gc_state) and checks its size against this.
 * The control plane writes an all-zero value of this size on upgrade, which cancels
 * the timer of the previous program; the new program arms its own at the next
 * connection. */
#define PPCTL_GC_STATE_SIZE 24

/* MARK: - The socket path (bpf/lb_sock.bpf.c) */

/* What the socket programs remember about a local client's socket (sk_storage map
 * "ppctl_sock_state"): set by connect4 when it sends the socket to a backend, read
 * by getpeername4 (to report the VIP), sock_ops and sk_msg (to write the header). */
#define PPCTL_SOCK_HDR_PENDING (1u << 0)  /* sk_msg: the header goes in front of the first send */
#define PPCTL_SOCK_HDR_AT_TC   (1u << 1)  /* tc egress puts it on the handshake ACK (sockops: else PENDING) */

struct ppctl_sock_state {
	struct ppctl_addr vip;      /* what the client connected to */
	__u16 vport;                /* network order */
	__u8 family;
	__u8 flags;                 /* PPCTL_SOCK_* */
	__u32 service_id;
	__u32 backend_id;
	__u16 hdr_flags;            /* PPCTL_SVC_PROXY_* | UNIQUE_ID | CRC32C, as in ppctl_ct_entry */
	__u16 pad;
	__u64 unique_id;
};

/* Key 0 of "ppctl_sock_config": which network namespace the instance serves (the
 * cgroup programs see every process of the cgroup, whatever its namespace). */
struct ppctl_sock_config {
	__u64 netns_cookie;         /* SO_NETNS_COOKIE of the balancer's namespace */
};

/* "ppctl_sock_stats", per-CPU array, one element at key 0. */
struct ppctl_sock_stats {
	__u64 connects;             /* connect() to a service sent to a backend */
	__u64 refused_no_backend;   /* connect() to a service without backends: ECONNREFUSED */
	__u64 headers_pushed;       /* PROXY headers put in front of a first send */
	__u64 header_errors;        /* header could not be built or pushed: send failed */
};

/* MARK: - Layout checks */

/* Both compilers check these: clang -target bpf for the programs, the host compiler
 * for the control plane (Sources/DatapathABI/shims.c includes this header; Swift
 * reads the structs through the same module). A change here is a change of the
 * pinned maps' layout: see "Upgrades" in docs/architecture.md. */
#define PPCTL_ABI_SIZE(type, size) \
	_Static_assert(sizeof(struct type) == (size), "size of struct " #type " changed")
#define PPCTL_ABI_OFFSET(type, field, offset) \
	_Static_assert(__builtin_offsetof(struct type, field) == (offset), \
		       "offset of " #type "." #field " changed")

PPCTL_ABI_SIZE(ppctl_addr, 16);

PPCTL_ABI_SIZE(ppctl_service_key, 20);
PPCTL_ABI_OFFSET(ppctl_service_key, port, 16);
PPCTL_ABI_OFFSET(ppctl_service_key, family, 18);
PPCTL_ABI_OFFSET(ppctl_service_key, proto, 19);

PPCTL_ABI_SIZE(ppctl_service, 16);
PPCTL_ABI_OFFSET(ppctl_service, flags, 4);
PPCTL_ABI_OFFSET(ppctl_service, backend_count, 8);
PPCTL_ABI_OFFSET(ppctl_service, owner, 10);
PPCTL_ABI_OFFSET(ppctl_service, table_size, 12);

PPCTL_ABI_SIZE(ppctl_snat_pool, 8 + 16 * PPCTL_MAX_SNAT_ADDRS);
PPCTL_ABI_OFFSET(ppctl_snat_pool, addr, 8);

PPCTL_ABI_SIZE(ppctl_maglev_head, 8);
PPCTL_ABI_SIZE(ppctl_maglev_slots, 2 * PPCTL_MAGLEV_SLOTS_PER_ELEM);
_Static_assert(sizeof(struct ppctl_maglev_head) == sizeof(struct ppctl_maglev_slots),
	       "a table's header and its slots share one element size");
_Static_assert(PPCTL_MAX_SERVICE_BACKENDS <= PPCTL_MAGLEV_NONE &&
	       PPCTL_MAX_SERVICE_BACKENDS <= 256, "backend indexes fit a slot and a backend id");

PPCTL_ABI_SIZE(ppctl_service_tlvs, 8 + PPCTL_MAX_SERVICE_TLV_LEN);
PPCTL_ABI_OFFSET(ppctl_service_tlvs, bytes, 8);
_Static_assert(PPCTL_PP2_HEADER_LEN + PPCTL_PP2_ADDR_LEN_IPV6 + PPCTL_MAX_SERVICE_TLV_LEN +
	       PPCTL_PP2_UNIQUE_ID_TLV_LEN + PPCTL_PP2_CRC32C_TLV_LEN <= PPCTL_MAX_HEADER_LEN,
	       "a v2 header with every TLV must fit in PPCTL_MAX_HEADER_LEN");
_Static_assert(PPCTL_PP2_UNIQUE_ID_TLV_LEN == PPCTL_PP2_TLV_HLEN + PPCTL_PP2_UNIQUE_ID_LEN &&
	       PPCTL_PP2_CRC32C_TLV_LEN == PPCTL_PP2_TLV_HLEN + PPCTL_PP2_CRC32C_LEN,
	       "TLV lengths are the header plus the value");
_Static_assert(PPCTL_PP1_MAX_LEN_IPV4 <= PPCTL_PP1_MAX_LEN && PPCTL_PP1_MAX_LEN_IPV6 <= PPCTL_PP1_MAX_LEN &&
	       PPCTL_PP1_MAX_LEN <= PPCTL_MAX_HEADER_LEN, "v1 lines fit in a header buffer");

PPCTL_ABI_SIZE(ppctl_backend, 32);
PPCTL_ABI_OFFSET(ppctl_backend, port, 16);
PPCTL_ABI_OFFSET(ppctl_backend, family, 18);
PPCTL_ABI_OFFSET(ppctl_backend, service_id, 20);
PPCTL_ABI_OFFSET(ppctl_backend, weight, 24);

PPCTL_ABI_SIZE(ppctl_ct_key, 40);
PPCTL_ABI_OFFSET(ppctl_ct_key, daddr, 16);
PPCTL_ABI_OFFSET(ppctl_ct_key, sport, 32);
PPCTL_ABI_OFFSET(ppctl_ct_key, dport, 34);
PPCTL_ABI_OFFSET(ppctl_ct_key, family, 36);
PPCTL_ABI_OFFSET(ppctl_ct_key, proto, 37);

PPCTL_ABI_SIZE(ppctl_ct_entry, 128);
PPCTL_ABI_OFFSET(ppctl_ct_entry, packets, 112);
PPCTL_ABI_OFFSET(ppctl_ct_entry, bytes, 120);
PPCTL_ABI_OFFSET(ppctl_ct_entry, nat_daddr, 16);
PPCTL_ABI_OFFSET(ppctl_ct_entry, nat_sport, 32);
PPCTL_ABI_OFFSET(ppctl_ct_entry, dir, 36);
PPCTL_ABI_OFFSET(ppctl_ct_entry, dir_flags, 37);
PPCTL_ABI_OFFSET(ppctl_ct_entry, family, 38);
PPCTL_ABI_OFFSET(ppctl_ct_entry, state, 40);
PPCTL_ABI_OFFSET(ppctl_ct_entry, client_isn, 44);
PPCTL_ABI_OFFSET(ppctl_ct_entry, hdr_len, 48);
PPCTL_ABI_OFFSET(ppctl_ct_entry, hdr_flags, 50);
PPCTL_ABI_OFFSET(ppctl_ct_entry, service_id, 52);
PPCTL_ABI_OFFSET(ppctl_ct_entry, backend_id, 56);
PPCTL_ABI_OFFSET(ppctl_ct_entry, ifindex, 60);
PPCTL_ABI_OFFSET(ppctl_ct_entry, smac, 64);
PPCTL_ABI_OFFSET(ppctl_ct_entry, dmac, 70);
PPCTL_ABI_OFFSET(ppctl_ct_entry, backend_isn, 76);
PPCTL_ABI_OFFSET(ppctl_ct_entry, created_ns, 80);
PPCTL_ABI_OFFSET(ppctl_ct_entry, last_seen_ns, 88);
PPCTL_ABI_OFFSET(ppctl_ct_entry, unique_id, 96);
PPCTL_ABI_OFFSET(ppctl_ct_entry, snd_end, 104);

PPCTL_ABI_SIZE(ppctl_config, 48);
PPCTL_ABI_OFFSET(ppctl_config, local_port_min, 4);
PPCTL_ABI_OFFSET(ppctl_config, timeout_syn, 8);
PPCTL_ABI_OFFSET(ppctl_config, gc_interval, 28);
PPCTL_ABI_OFFSET(ppctl_config, timeout_time_wait, 32);
PPCTL_ABI_OFFSET(ppctl_config, abi_version, 36);
PPCTL_ABI_OFFSET(ppctl_config, hash_seed, 40);

PPCTL_ABI_SIZE(ppctl_iface, 24);
PPCTL_ABI_OFFSET(ppctl_iface, flags, 16);

PPCTL_ABI_SIZE(ppctl_stats, 8 * 25);
PPCTL_ABI_SIZE(ppctl_service_stats, 8 * 6);
PPCTL_ABI_SIZE(ppctl_backend_stats, 8 * 5);
PPCTL_ABI_OFFSET(ppctl_stats, resets_sent, 152);
PPCTL_ABI_OFFSET(ppctl_stats, dropped_rewrite_error, 160);
PPCTL_ABI_OFFSET(ppctl_stats, passed_local_untracked, 192);

PPCTL_ABI_SIZE(ppctl_sock_state, 40);
PPCTL_ABI_OFFSET(ppctl_sock_state, vport, 16);
PPCTL_ABI_OFFSET(ppctl_sock_state, family, 18);
PPCTL_ABI_OFFSET(ppctl_sock_state, flags, 19);
PPCTL_ABI_OFFSET(ppctl_sock_state, service_id, 20);
PPCTL_ABI_OFFSET(ppctl_sock_state, backend_id, 24);
PPCTL_ABI_OFFSET(ppctl_sock_state, hdr_flags, 28);
PPCTL_ABI_OFFSET(ppctl_sock_state, unique_id, 32);
_Static_assert(sizeof(((struct ppctl_sock_state *)0)->hdr_flags) ==
	       sizeof(((struct ppctl_ct_entry *)0)->hdr_flags),
	       "hdr_flags has one width: the socket path hands it to the tc path");

PPCTL_ABI_SIZE(ppctl_sock_config, 8);

PPCTL_ABI_SIZE(ppctl_sock_stats, 8 * 4);
PPCTL_ABI_OFFSET(ppctl_sock_stats, header_errors, 24);

#endif /* PPCTL_ABI_H */
