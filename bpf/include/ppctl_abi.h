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

/* MARK: - Limits */

#define PPCTL_MAX_SERVICES      16384
/* Backends of all services together; a service has at most PPCTL_RING_SIZE. */
#define PPCTL_MAX_BACKENDS      131072
/* Slots in a service's endpoint ring: endpoint choice is ring[hash % size]. */
#define PPCTL_RING_SIZE         256
/* Default number of connections the conntrack map holds (two entries each). */
#define PPCTL_DEFAULT_MAX_CONNS 131072
/* Attached interfaces the control plane remembers. */
#define PPCTL_MAX_IFACES        64
/* Addresses in one SNAT pool (a service's, or the instance's default). */
#define PPCTL_MAX_SNAT_ADDRS    16
/* Longest PROXY header a connection can carry (v2 fixed part + TLVs). */
#define PPCTL_MAX_HEADER_LEN    256
/* Longest run of pre-encoded TLVs a service can add to its v2 headers: what is left
 * of PPCTL_MAX_HEADER_LEN after the IPv6 fixed part (52), a UNIQUE_ID TLV (3 + 16)
 * and a CRC32C TLV (3 + 4). */
#define PPCTL_MAX_SERVICE_TLV_LEN 176

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
/* Local clients (socket path) get the header on the handshake ACK at tc egress, not
 * in front of their first send: for protocols where the server speaks first. */
#define PPCTL_SVC_SERVER_FIRST (1u << 5)

struct ppctl_service {
	__u32 id;                   /* index into ppctl_rings */
	__u32 flags;                /* PPCTL_SVC_* */
	__u16 backend_count;        /* 0: the service refuses new connections */
	__u16 owner;                /* who manages it (ServiceOwner): 0 ppctl, 1 ppctld; the datapath ignores it */
	__u32 reserved2;
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

/* MARK: - Endpoint rings (map "ppctl_rings", array indexed by service id) */

/* Each slot holds the index (0..255) of one of the service's backends; the
 * control plane fills the slots in proportion to the backends' weights, leaving
 * out backends that are down or draining (their connections keep their entries).
 * A slot of PPCTL_RING_NONE selects nothing: a ring of only those refuses new
 * connections, as backend_count 0 does (every backend down). */
#define PPCTL_RING_NONE 0xffffffffu
struct ppctl_ring {
	__u32 backend[PPCTL_RING_SIZE];
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
 * ring slots hold): no allocator needed. */
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

/* Per-direction bits (not mirrored). */
#define PPCTL_CT_L_FWD_CACHED  (1u << 0)  /* ifindex/smac/dmac are valid */
#define PPCTL_CT_L_DATA_SEEN   (1u << 1)  /* client data at ISN+1 went out once */
#define PPCTL_CT_L_PEER        (1u << 2)  /* egress is a veth: bpf_redirect_peer */
/* A local client's connection to a server-first service (socket path): no address
 * is rewritten, packets go on through the stack, only seq/ack/SACK move. */
#define PPCTL_CT_L_LOCAL       (1u << 3)

struct ppctl_ct_entry {
	/* Rewrite for packets matching the key. */
	struct ppctl_addr nat_saddr;
	struct ppctl_addr nat_daddr;
	__u16 nat_sport;            /* network order */
	__u16 nat_dport;            /* network order */
	__u8 dir;                   /* PPCTL_DIR_* */
	__u8 local_flags;           /* PPCTL_CT_L_* for this direction only */
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
};

/* MARK: - Configuration (map "ppctl_config", one element at key 0) */

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

/* MARK: - Statistics (map "ppctl_stats", per-CPU array, one element at key 0) */

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
	__u64 fwd_errors;           /* redirect or rewrite failures */
	__u64 refused_snat_exhausted; /* SYN refused: every SNAT tuple towards the backend in use */
	__u64 dropped_out_of_window; /* segment outside the connection's window: dropped */
	__u64 ignored_rst;          /* RST not at the sender's next sequence: passed, state kept */
	__u64 resets_sent;          /* RSTs the balancer sent to refuse a SYN */
};

/* MARK: - The conntrack sweeper (map "ppctl_gc", one element at key 0) */

/* The control plane writes a zeroed element on upgrade, which cancels the timer of
 * the previous program; the new program arms its own at the next connection. */
struct ppctl_gc_state {
#if defined(__bpf__)
	struct bpf_timer timer;
#else
	__u64 timer[2];
#endif
	__u32 armed;
	__u32 pad;
};

/* MARK: - The socket path (bpf/lb_sock.bpf.c) */

/* What the socket programs remember about a local client's socket (sk_storage map
 * "ppctl_sock_state"): set by connect4 when it sends the socket to a backend, read
 * by getpeername4 (to report the VIP), sock_ops and sk_msg (to write the header). */
#define PPCTL_SOCK_HDR_PENDING (1u << 0)  /* sk_msg: the header goes in front of the first send */
#define PPCTL_SOCK_HDR_AT_TC   (1u << 1)  /* server-first: tc egress puts it on the handshake ACK */

struct ppctl_sock_state {
	struct ppctl_addr vip;      /* what the client connected to */
	__u16 vport;                /* network order */
	__u8 family;
	__u8 flags;                 /* PPCTL_SOCK_* */
	__u32 service_id;
	__u32 backend_id;
	__u32 hdr_flags;            /* PPCTL_SVC_PROXY_* | UNIQUE_ID | CRC32C */
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

#endif /* PPCTL_ABI_H */
