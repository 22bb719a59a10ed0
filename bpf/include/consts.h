/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* consts.h: every magic number of the datapath, named. */
#ifndef PPCTL_CONSTS_H
#define PPCTL_CONSTS_H

#define ETH_HLEN            14
#define ETH_ALEN            6
#define ETH_P_IP            0x0800
#define ETH_P_IPV6          0x86DD

#define IPV4_HLEN_MIN       20
#define IPV4_HLEN_MAX       60
#define IPV4_FLAG_MF        0x2000
#define IPV4_FRAG_OFFSET    0x1FFF

#define TCP_HLEN_MIN        20
#define TCP_HLEN_MAX        60
#define TCP_CSUM_OFF        16      /* offset of the checksum in the TCP header */
#define IP_CSUM_OFF         10      /* offset of the checksum in the IPv4 header */

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

/* How many SNAT ports a new connection tries before it is refused. */
#define SNAT_PORT_TRIES     32

#define CLOCK_MONOTONIC     1

/* PROXY protocol v2 (HAProxy's proxy-protocol.txt, section 2.2). */
#define PP2_SIGNATURE_LEN   12
#define PP2_HEADER_LEN      16
#define PP2_VERSION_PROXY   0x21    /* version 2, command PROXY */
#define PP2_FAM_TCP4        0x11
#define PP2_ADDR_LEN_IPV4   12

#endif /* PPCTL_CONSTS_H */
