/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* consts.h: every magic number of the datapath, named. */
#ifndef PPCTL_CONSTS_H
#define PPCTL_CONSTS_H

#include <linux/ip.h>
#include <linux/tcp.h>
#include "ppctl_abi.h"

#define ETH_HLEN            14
#define ETH_ALEN            6
#define ETH_P_IP            0x0800
#define ETH_P_IPV6          0x86DD
#ifndef PACKET_HOST
#define PACKET_HOST         0       /* skb->pkt_type: addressed to this host (linux/if_packet.h) */
#endif

#define IPV6_HLEN           40
/* Extension headers skipped before TCP: at most this many, within this length. */
#define IPV6_MAX_EXT_HEADERS 4
#define IPV6_HLEN_MAX       (IPV6_HLEN + 64)
#define IPV6_EXT_HOPOPTS    0
#define IPV6_EXT_ROUTING    43
#define IPV6_EXT_FRAGMENT   44
#define IPV6_EXT_DSTOPTS    60

/* parse.h guarantees l4_off <= ETH_HLEN + IPV6_HLEN_MAX (118); masking with this
 * shows the verifier a bound it can keep through spills. */
#define L4_OFF_MASK         0x7f

#define IPV4_HLEN_MIN       20
#define IPV4_HLEN_MAX       60
#define IPV4_FLAG_MF        0x2000
#define IPV4_FRAG_OFFSET    0x1FFF

#define TCP_HLEN_MIN        20
#define TCP_HLEN_MAX        60
#define TCP_CSUM_OFF        __builtin_offsetof(struct tcphdr, check)
#define IP_CSUM_OFF         __builtin_offsetof(struct iphdr, check)
/* The byte of the TCP flags (FIN...CWR): a bitfield in struct tcphdr, just before
 * the window. */
#define TCP_FLAGS_OFF       (__builtin_offsetof(struct tcphdr, window) - 1)

/* TCP flags as found in byte 13 of the header. */
#define TCPF_FIN        0x01
#define TCPF_SYN        0x02
#define TCPF_RST        0x04
#define TCPF_PSH        0x08
#define TCPF_ACK        0x10

/* TCP options. */
#define TCPOPT_EOL          0
#define TCPOPT_NOP          1
#define TCPOPT_SACK         5
#define TCPOPT_SACK_BLOCK   8
#define TCPOPT_SACK_MAX_BLOCKS 4
/* NOP, NOP, TIMESTAMP(10): the options of nearly every established segment. */
#define TCPOPT_NOP_NOP_TS   0x0A080101  /* as a little-endian load of 01 01 08 0A */

#define NS_PER_SEC          1000000000ULL
/* last_seen_ns is refreshed at most this often, to keep entries clean in cache. */
#define CT_REFRESH_NS       NS_PER_SEC

/* How far from the edge of what a sender has sent (either side) one of its
 * segments may lie and still count as in its window (Linux's largest default
 * receive buffer is 6 MiB). Beyond it, a FIN or an ack changes no state. */
#define TCP_MAX_WINDOW      (1u << 23)

/* How many SNAT tuples (address, port) a new connection tries before it is
 * refused: the client's port on each pool address, then hashed ports. */
#define SNAT_PORT_TRIES     64

#define CLOCK_MONOTONIC     1
/* What a full BPF hash map's update returns (negated). */
#define ERRNO_E2BIG         7

/* PROXY protocol v2 (HAProxy's proxy-protocol.txt, section 2.2). The sizes are
 * ppctl_abi.h's, which the control plane uses to bound a service's headers. */
#define PP2_SIGNATURE_LEN   12
#define PP2_HEADER_LEN      PPCTL_PP2_HEADER_LEN
#define PP2_VERSION_PROXY   0x21    /* version 2, command PROXY */
#define PP2_VERSION_LOCAL   0x20
#define PP2_FAM_TCP4        0x11
#define PP2_FAM_TCP6        0x21
#define PP2_ADDR_LEN_IPV4   PPCTL_PP2_ADDR_LEN_IPV4
#define PP2_ADDR_LEN_IPV6   PPCTL_PP2_ADDR_LEN_IPV6
#define PP2_TYPE_CRC32C     0x03
#define PP2_TYPE_UNIQUE_ID  0x05
#define PP2_TLV_HLEN        PPCTL_PP2_TLV_HLEN
#define PP2_UNIQUE_ID_LEN   PPCTL_PP2_UNIQUE_ID_LEN
#define PP2_CRC32C_LEN      PPCTL_PP2_CRC32C_LEN
/* PROXY protocol v1 (section 2.1): the longest line is 107 bytes. */
#define PP1_MAX_LEN         PPCTL_PP1_MAX_LEN

/* A socket's type (struct bpf_sock, bpf_sock_addr), as <sys/socket.h> has it. */
#define SOCK_STREAM         1

#endif /* PPCTL_CONSTS_H */
