/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
public let proxyV2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

extension ProxyHeader {
    /// The header's bytes, as real receivers (nginx, HAProxy) accept them: LOCAL is
    /// written with family UNSPEC and no addresses (TLVs kept), v1 UNKNOWN in its
    /// short form. With `crc32c`, a CRC32C TLV is appended (v2 only) and computed
    /// over the final header. Throws `.cannotEncode` for v1 with TLVs, UNIX or
    /// datagram addresses, or values too long for their fields.
    public func encoded(crc32c: Bool = false) throws(ProxyProtocolError) -> [UInt8] {
        var out: [UInt8] = []
        try encode(into: &out, crc32c: crc32c)
        return out
    }

    /// Appends the header's bytes to `out`; see `encoded(crc32c:)`.
    public func encode(into out: inout [UInt8], crc32c: Bool = false) throws(ProxyProtocolError) {
        switch version {
        case .v1: try encodeV1(into: &out)
        case .v2: try encodeV2(into: &out, crc32c: crc32c)
        }
    }

    private func encodeV1(into out: inout [UInt8]) throws(ProxyProtocolError) {
        guard tlvs.isEmpty else { throw .cannotEncode("v1 headers carry no TLVs") }
        let line: String
        switch (command, addresses) {
        case (.local, _), (_, .unspecified):
            line = "PROXY UNKNOWN\r\n"
        case (.proxy, .ipv4(let s, let sp, let d, let dp, .stream)):
            line = "PROXY TCP4 \(s) \(d) \(sp) \(dp)\r\n"
        case (.proxy, .ipv6(let s, let sp, let d, let dp, .stream)):
            line = "PROXY TCP6 \(s) \(d) \(sp) \(dp)\r\n"
        default:
            throw .cannotEncode("v1 has no form for UNIX or datagram addresses")
        }
        out += Array(line.utf8)
    }

    private func encodeV2(into out: inout [UInt8], crc32c: Bool) throws(ProxyProtocolError) {
        // The common case, TCP over IPv4 without TLVs, in one copy.
        if command == .proxy, tlvs.isEmpty, !crc32c, case .ipv4(let s, let sp, let d, let dp, let t) = addresses {
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 28) { b in
                b[0] = 0x0D
                b[1] = 0x0A
                b[2] = 0x0D
                b[3] = 0x0A
                b[4] = 0x00
                b[5] = 0x0D
                b[6] = 0x0A
                b[7] = 0x51
                b[8] = 0x55
                b[9] = 0x49
                b[10] = 0x54
                b[11] = 0x0A
                b[12] = 0x21
                b[13] = 0x10 | t.rawValue
                b[14] = 0
                b[15] = 12
                b[16] = s.bytes.0
                b[17] = s.bytes.1
                b[18] = s.bytes.2
                b[19] = s.bytes.3
                b[20] = d.bytes.0
                b[21] = d.bytes.1
                b[22] = d.bytes.2
                b[23] = d.bytes.3
                b[24] = UInt8(sp >> 8)
                b[25] = UInt8(sp & 0xff)
                b[26] = UInt8(dp >> 8)
                b[27] = UInt8(dp & 0xff)
                out.append(contentsOf: UnsafeBufferPointer(b))
            }
            return
        }
        let start = out.count
        out += proxyV2Signature
        out.append(0x20 | command.rawValue)
        let family: UInt8 = command == .local ? 0x00 : familyByte
        out.append(family)
        out.append(0)
        out.append(0)
        if command == .proxy {
            switch addresses {
            case .unspecified:
                break
            case .ipv4(let s, let sp, let d, let dp, _):
                out += [s.bytes.0, s.bytes.1, s.bytes.2, s.bytes.3, d.bytes.0, d.bytes.1, d.bytes.2, d.bytes.3]
                out += [UInt8(sp >> 8), UInt8(sp & 0xff), UInt8(dp >> 8), UInt8(dp & 0xff)]
            case .ipv6(let s, let sp, let d, let dp, _):
                out += s.bytes
                out += d.bytes
                out += [UInt8(sp >> 8), UInt8(sp & 0xff), UInt8(dp >> 8), UInt8(dp & 0xff)]
            case .unix(let s, let d, _):
                guard s.count <= 108, d.count <= 108 else { throw .cannotEncode("UNIX path longer than 108 bytes") }
                out += s + Array(repeating: 0, count: 108 - s.count)
                out += d + Array(repeating: 0, count: 108 - d.count)
            }
        }
        for tlv in tlvs where !(crc32c && tlv.type == ProxyTLV.Kind.crc32c.rawValue) {
            guard tlv.value.count <= 0xFFFF else { throw .cannotEncode("TLV 0x\(hex(tlv.type)) longer than 65535 bytes") }
            if tlv.type == ProxyTLV.Kind.uniqueID.rawValue && tlv.value.count > 128 {
                throw .cannotEncode("UNIQUE_ID longer than 128 bytes")
            }
            out.append(tlv.type)
            out.append(UInt8(tlv.value.count >> 8))
            out.append(UInt8(tlv.value.count & 0xff))
            out += tlv.value
        }
        var crcOffset = -1
        if crc32c {
            crcOffset = out.count + 3
            out += [ProxyTLV.Kind.crc32c.rawValue, 0, 4, 0, 0, 0, 0]
        }
        let length = out.count - start - 16
        guard length <= 0xFFFF else { throw .cannotEncode("header longer than 65551 bytes") }
        out[start + 14] = UInt8(length >> 8)
        out[start + 15] = UInt8(length & 0xff)
        if crcOffset >= 0 {
            let crc = out[start...].withUnsafeBytes { CRC32C.checksum($0) }
            out[crcOffset] = UInt8(crc >> 24)
            out[crcOffset + 1] = UInt8((crc >> 16) & 0xff)
            out[crcOffset + 2] = UInt8((crc >> 8) & 0xff)
            out[crcOffset + 3] = UInt8(crc & 0xff)
        }
    }
}
