/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* proxy_header.h: the PROXY protocol header a connection carries.
 *
 * The length is decided once, when the connection is created, and stored in its
 * conntrack entries (it is the sequence delta); the bytes are rebuilt from the
 * client-side tuple whenever the header has to be (re)sent. */
#ifndef PPCTL_PROXY_HEADER_H
#define PPCTL_PROXY_HEADER_H

#include <linux/types.h>
#include "consts.h"
#include "ppctl_abi.h"

/* Bytes of PROXY header a new connection of this service carries (0: none). */
static __always_inline __u32 proxy_header_len(const struct ppctl_service *svc)
{
	if (svc->flags & PPCTL_SVC_PROXY_V2)
		return PP2_HEADER_LEN + PP2_ADDR_LEN_IPV4;
	return 0;
}

/* Writes the v2 header for the connection whose client-side tuple is `client`
 * (client address and port -> VIP and port) into buf, zero-pads it to a multiple
 * of 4 (for the checksum), and returns its length. */
static __always_inline __u32 proxy_header_build(__u8 *buf, const struct ppctl_ct_key *client)
{
	static const __u8 signature[PP2_SIGNATURE_LEN] = {
		0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
	};
	__u16 addr_len = PP2_ADDR_LEN_IPV4;

	__builtin_memcpy(buf, signature, PP2_SIGNATURE_LEN);
	buf[12] = PP2_VERSION_PROXY;
	buf[13] = PP2_FAM_TCP4;
	buf[14] = addr_len >> 8;
	buf[15] = addr_len & 0xff;
	__builtin_memcpy(buf + 16, &client->saddr.w[0], 4);
	__builtin_memcpy(buf + 20, &client->daddr.w[0], 4);
	__builtin_memcpy(buf + 24, &client->sport, 2);
	__builtin_memcpy(buf + 26, &client->dport, 2);
	return PP2_HEADER_LEN + PP2_ADDR_LEN_IPV4;
}

#endif /* PPCTL_PROXY_HEADER_H */
