/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* proxy_header.h: the PROXY protocol header a connection carries.
 *
 * The header is built from the connection's client-side tuple (client address
 * and port, VIP and port), its hdr_flags (v1 or v2, UNIQUE_ID, CRC32C), its
 * unique id and its service's pre-encoded TLVs. It is built once when the
 * connection is created, to learn its length (the sequence delta, stored with the
 * connection), and again, identical, whenever it has to be (re)sent.
 *
 *   v2: signature(12) ver/cmd(1) fam(1) len(2) | addresses+ports (12 or 36)
 *       | service TLVs | UNIQUE_ID TLV (16 hex digits) | CRC32C TLV
 *   v1: "PROXY TCP4 198.18.1.2 198.18.0.10 43976 80\r\n"
 *
 * All writes go through `at()`, which masks the offset into the 256-byte buffer
 * so that the verifier can see every access is in bounds. */
#ifndef PPCTL_PROXY_HEADER_H
#define PPCTL_PROXY_HEADER_H

#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include "consts.h"
#include "crc32c_table.h"
#include "service_maps.h"
#include "ppctl_abi.h"

#define HDR_MASK (PPCTL_MAX_HEADER_LEN - 1)

/* The v2 header's fixed part and address blocks (proxy-protocol.txt, 2.2): the
 * offsets build_v2 writes at, by name. */
struct pp2_hdr {
	__u8 sig[PP2_SIGNATURE_LEN];
	__u8 ver_cmd;
	__u8 fam;
	__be16 len;                 /* of what follows the fixed part */
};
struct pp2_addr_ipv4 {
	__be32 src_addr, dst_addr;
	__be16 src_port, dst_port;
};
struct pp2_addr_ipv6 {
	__u8 src_addr[16], dst_addr[16];
	__be16 src_port, dst_port;
};
_Static_assert(sizeof(struct pp2_hdr) == PP2_HEADER_LEN, "v2 fixed part");
_Static_assert(sizeof(struct pp2_addr_ipv4) == PP2_ADDR_LEN_IPV4, "v2 IPv4 addresses");
_Static_assert(sizeof(struct pp2_addr_ipv6) == PP2_ADDR_LEN_IPV6, "v2 IPv6 addresses");

#define PP2_AT(field)      __builtin_offsetof(struct pp2_hdr, field)
#define PP2_V4_AT(field)   (PP2_HEADER_LEN + __builtin_offsetof(struct pp2_addr_ipv4, field))
#define PP2_V6_AT(field)   (PP2_HEADER_LEN + __builtin_offsetof(struct pp2_addr_ipv6, field))
/* Where the CRC32C value sits in its TLV (after type and length). */
#define PP2_TLV_VALUE_AT   PP2_TLV_HLEN

/* The service flags that shape a connection's header: what a connection copies
 * from its service (hdr_flags) and proxy_header_build reads. */
#define PPCTL_HDR_FLAGS (PPCTL_SVC_PROXY_V1 | PPCTL_SVC_PROXY_V2 | PPCTL_SVC_UNIQUE_ID | PPCTL_SVC_CRC32C)

static __always_inline __u32 header_flags(__u32 service_flags)
{
	return service_flags & PPCTL_HDR_FLAGS;
}

/* A new connection's UNIQUE_ID (64 random bits), or 0 if its header carries none. */
static __always_inline __u64 new_unique_id(__u32 hdr_flags)
{
	if (!(hdr_flags & PPCTL_SVC_UNIQUE_ID))
		return 0;
	return ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
}

static __always_inline __u8 *at(__u8 *buf, __u32 off)
{
	return buf + (off & HDR_MASK);
}

static __always_inline __u32 put_byte(__u8 *buf, __u32 off, __u8 c)
{
	*at(buf, off) = c;
	return off + 1;
}

/*
 * Text is formatted without data-dependent branches: every digit position is
 * written and only the offset moves by the number's length. Branching per digit
 * would multiply the paths the verifier walks (and hit its limit).
 */

/* 1 if a > b, else 0, for values below 2^31. */
static __always_inline __u32 gt(__u32 a, __u32 b)
{
	return ((__s32)(b - a) >> 31) & 1;
}

/* Decimal, no leading zeros (v1 forbids them), v < 100000. */
static __always_inline __u32 put_decimal(__u8 *buf, __u32 off, __u32 v)
{
	__u32 n = 1 + gt(v, 9) + gt(v, 99) + gt(v, 999) + gt(v, 9999), i;
	/* The five digits, most significant in the lowest byte, then the leading
	 * zeros shifted out. */
	__u64 text = ('0' + (v / 10000) % 10) |
		     (('0' + (v / 1000) % 10) << 8) |
		     (('0' + (v / 100) % 10) << 16) |
		     ((__u64)('0' + (v / 10) % 10) << 24) |
		     ((__u64)('0' + v % 10) << 32);

	text >>= 8 * (5 - n);
	for (i = 0; i < 5; i++)
		*at(buf, off + i) = text >> (8 * i);
	return off + n;
}

static __always_inline __u8 hex_digit(__u32 v)
{
	v &= 0xf;
	return '0' + v + gt(v, 9) * ('a' - '0' - 10);
}

static __always_inline __u32 put_hex_nibble(__u8 *buf, __u32 off, __u32 v)
{
	return put_byte(buf, off, hex_digit(v));
}

/* An IPv6 group in lowercase hex without leading zeros. */
static __always_inline __u32 put_hex_group(__u8 *buf, __u32 off, __u32 group)
{
	__u32 n = 1 + gt(group, 0xf) + gt(group, 0xff) + gt(group, 0xfff), i;
	__u32 text = hex_digit(group >> 12) | (hex_digit(group >> 8) << 8) |
		     (hex_digit(group >> 4) << 16) | ((__u32)hex_digit(group) << 24);

	text >>= 8 * (4 - n);
	for (i = 0; i < 4; i++)
		*at(buf, off + i) = text >> (8 * i);
	return off + n;
}

/* The address formatters, the builders and the CRC are global functions, each
 * verified once on its own, with an offset it cannot predict: the verifier then
 * has one path to walk instead of one per combination of digit counts. */
__noinline __u32 put_ipv4_text(struct ppctl_scratch *scratch, __u32 off,
			       const struct ppctl_addr *a)
{
	__u8 *buf;
	const __u8 *b;

	if (!scratch || !a)
		return off;
	buf = scratch->buf;
	b = (const __u8 *)&a->w[0];

	off = put_decimal(buf, off, b[0]);
	off = put_byte(buf, off, '.');
	off = put_decimal(buf, off, b[1]);
	off = put_byte(buf, off, '.');
	off = put_decimal(buf, off, b[2]);
	off = put_byte(buf, off, '.');
	return put_decimal(buf, off, b[3]);
}

/* The eight groups, each without leading zeros ("2001:2:0:0:0:0:0:1"): a valid
 * RFC 4291 text form that inet_pton(), nginx and HAProxy read. (The "::"
 * shorthand needs a search the verifier would have to walk path by path.) */
__noinline __u32 put_ipv6_text(struct ppctl_scratch *scratch, __u32 off,
			       const struct ppctl_addr *a)
{
	__u8 *buf;
	const __u8 *b;
	__u32 i;

	if (!scratch || !a)
		return off;
	buf = scratch->buf;
	b = (const __u8 *)a;

	for (i = 0; i < 8; i++) {
		if (i)
			off = put_byte(buf, off, ':');
		off = put_hex_group(buf, off, ((__u32)b[2 * i] << 8) | b[2 * i + 1]);
	}
	return off;
}

/* "PROXY TCP4 src dst sport dport\r\n" */
__noinline __u32 build_v1(struct ppctl_scratch *scratch, const struct ppctl_ct_key *client)
{
	__u8 *buf;
	__u32 off = 0;

	if (!scratch || !client)
		return 0;
	buf = scratch->buf;

	off = put_byte(buf, off, 'P');
	off = put_byte(buf, off, 'R');
	off = put_byte(buf, off, 'O');
	off = put_byte(buf, off, 'X');
	off = put_byte(buf, off, 'Y');
	off = put_byte(buf, off, ' ');
	off = put_byte(buf, off, 'T');
	off = put_byte(buf, off, 'C');
	off = put_byte(buf, off, 'P');
	off = put_byte(buf, off, client->family == PPCTL_FAMILY_IPV6 ? '6' : '4');
	off = put_byte(buf, off, ' ');
	if (client->family == PPCTL_FAMILY_IPV4) {
		off = put_ipv4_text(scratch, off, &client->saddr);
		off = put_byte(buf, off, ' ');
		off = put_ipv4_text(scratch, off, &client->daddr);
	} else {
		off = put_ipv6_text(scratch, off, &client->saddr);
		off = put_byte(buf, off, ' ');
		off = put_ipv6_text(scratch, off, &client->daddr);
	}
	off = put_byte(buf, off, ' ');
	off = put_decimal(buf, off, bpf_ntohs(client->sport));
	off = put_byte(buf, off, ' ');
	off = put_decimal(buf, off, bpf_ntohs(client->dport));
	off = put_byte(buf, off, '\r');
	return put_byte(buf, off, '\n');
}

__noinline __u32 crc32c(struct ppctl_scratch *scratch, __u32 len)
{
	__u32 crc = 0xffffffff, i;
	__u8 *buf;

	if (!scratch)
		return 0;
	buf = scratch->buf;

	for (i = 0; i < PPCTL_MAX_HEADER_LEN; i++) {
		if (i >= len)
			break;
		crc = crc32c_table[(crc ^ *at(buf, i)) & 0xff] ^ (crc >> 8);
	}
	return ~crc;
}

__noinline __u32 build_v2(struct ppctl_scratch *scratch, const struct ppctl_ct_key *client,
			  __u32 hdr_flags, __u32 service_id, __u64 unique_id)
{
	struct ppctl_service_tlvs *tlvs = bpf_map_lookup_elem(&ppctl_service_tlvs, &service_id);
	__u32 off, crc_off = 0, i;
	__u8 *buf;

	if (!scratch || !client)
		return 0;
	buf = scratch->buf;

	/* The signature: 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A ("\r\n\r\n\0\r\nQUIT\n"). */
	buf[0] = 0x0D; buf[1] = 0x0A; buf[2] = 0x0D; buf[3] = 0x0A;
	buf[4] = 0x00; buf[5] = 0x0D; buf[6] = 0x0A; buf[7] = 0x51;
	buf[8] = 0x55; buf[9] = 0x49; buf[10] = 0x54; buf[11] = 0x0A;
	buf[PP2_AT(ver_cmd)] = PP2_VERSION_PROXY;
	if (client->family == PPCTL_FAMILY_IPV4) {
		buf[PP2_AT(fam)] = PP2_FAM_TCP4;
		__builtin_memcpy(buf + PP2_V4_AT(src_addr), &client->saddr.w[0], 4);
		__builtin_memcpy(buf + PP2_V4_AT(dst_addr), &client->daddr.w[0], 4);
		__builtin_memcpy(buf + PP2_V4_AT(src_port), &client->sport, 2);
		__builtin_memcpy(buf + PP2_V4_AT(dst_port), &client->dport, 2);
		off = PP2_HEADER_LEN + PP2_ADDR_LEN_IPV4;
		if (tlvs && tlvs->len)
			__builtin_memcpy(buf + off, tlvs->bytes, PPCTL_MAX_SERVICE_TLV_LEN);
	} else {
		buf[PP2_AT(fam)] = PP2_FAM_TCP6;
		__builtin_memcpy(buf + PP2_V6_AT(src_addr), &client->saddr, 16);
		__builtin_memcpy(buf + PP2_V6_AT(dst_addr), &client->daddr, 16);
		__builtin_memcpy(buf + PP2_V6_AT(src_port), &client->sport, 2);
		__builtin_memcpy(buf + PP2_V6_AT(dst_port), &client->dport, 2);
		off = PP2_HEADER_LEN + PP2_ADDR_LEN_IPV6;
		if (tlvs && tlvs->len)
			__builtin_memcpy(buf + off, tlvs->bytes, PPCTL_MAX_SERVICE_TLV_LEN);
	}
	if (tlvs && tlvs->len <= PPCTL_MAX_SERVICE_TLV_LEN)
		off += tlvs->len;

	if (hdr_flags & PPCTL_SVC_UNIQUE_ID) {
		off = put_byte(buf, off, PP2_TYPE_UNIQUE_ID);
		off = put_byte(buf, off, 0);
		off = put_byte(buf, off, PP2_UNIQUE_ID_LEN);
		for (i = 0; i < PP2_UNIQUE_ID_LEN; i++)
			off = put_hex_nibble(buf, off, unique_id >> (60 - 4 * i));
	}
	if (hdr_flags & PPCTL_SVC_CRC32C) {
		crc_off = off;
		off = put_byte(buf, off, PP2_TYPE_CRC32C);
		off = put_byte(buf, off, 0);
		off = put_byte(buf, off, PP2_CRC32C_LEN);
		for (i = 0; i < PP2_CRC32C_LEN; i++)
			off = put_byte(buf, off, 0);
	}
	buf[PP2_AT(len)] = (off - PP2_HEADER_LEN) >> 8;
	buf[PP2_AT(len) + 1] = (off - PP2_HEADER_LEN) & 0xff;
	if (hdr_flags & PPCTL_SVC_CRC32C) {
		__u32 crc = crc32c(scratch, off);

		crc_off += PP2_TLV_VALUE_AT;
		put_byte(buf, crc_off, crc >> 24);
		put_byte(buf, crc_off + 1, crc >> 16);
		put_byte(buf, crc_off + 2, crc >> 8);
		put_byte(buf, crc_off + 3, crc);
	}
	return off;
}

/* Writes the header of the connection whose client-side tuple is `client` into
 * scratch->buf, zero-pads it to a multiple of 4 (for the checksum), and returns
 * its length (0: the connection carries no header).
 * A global function: the verifier checks it once, not once per caller. */
__noinline __u32 proxy_header_build(struct ppctl_scratch *scratch,
				    const struct ppctl_ct_key *client,
				    __u32 hdr_flags, __u32 service_id, __u64 unique_id)
{
	__u8 *buf;
	__u32 len = 0;

	if (!scratch || !client)
		return 0;
	buf = scratch->buf;

	if (hdr_flags & PPCTL_SVC_PROXY_V2)
		len = build_v2(scratch, client, hdr_flags, service_id, unique_id);
	else if (hdr_flags & PPCTL_SVC_PROXY_V1)
		len = build_v1(scratch, client);
	if (len > PPCTL_MAX_HEADER_LEN - 4)
		return 0;
	*at(buf, len) = 0;
	*at(buf, len + 1) = 0;
	*at(buf, len + 2) = 0;
	return len;
}

#endif /* PPCTL_PROXY_HEADER_H */
