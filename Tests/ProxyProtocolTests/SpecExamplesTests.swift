import ProxyProtocol
import XCTest

final class SpecExamplesTests: XCTestCase {
    func testCRC32CCheckValue() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }

    func testCRC32CLongInputMatchesBytewise() {
        var g = SeededGenerator(seed: 7)
        let data = (0..<10_001).map { _ in UInt8.random(in: 0...255, using: &g) }
        var c: UInt32 = 0xFFFF_FFFF
        for b in data {
            c ^= UInt32(b)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        XCTAssertEqual(CRC32C.checksum(data), c ^ 0xFFFF_FFFF)
    }

    func testLocalUnspecWithOnlyCRCVerifies() throws {
        let h = bytes(hex: "0D0A0D0A000D0A515549540A 20 00 0007 030004 a9b87e8f")
        let (header, n) = try XCTUnwrap(decodeHeader(h))
        XCTAssertEqual(n, h.count)
        XCTAssertEqual(header.command, .local)
        XCTAssertEqual(header.addresses, .unspecified)
        XCTAssertEqual(header.crc32c, 0xa9b8_7e8f)
    }

    func testProxyTCP4WithCRCVerifies() throws {
        let h = bytes(hex: "0D0A0D0A000D0A515549540A 21 11 0013 00000000 7f000001 0000 0019 030004 25c91172")
        let (header, _) = try XCTUnwrap(decodeHeader(h))
        XCTAssertEqual(
            header.addresses,
            .ipv4(
                source: IPv4Address(0, 0, 0, 0), sourcePort: 0,
                destination: IPv4Address(127, 0, 0, 1), destinationPort: 25,
                transport: .stream))
    }

    func testProxyUnspecWithCRCVerifies() throws {
        let h = bytes(hex: "0D0A0D0A000D0A515549540A 21 00 0007 030004 3ec9894e")
        let (header, _) = try XCTUnwrap(decodeHeader(h))
        XCTAssertEqual(header.command, .proxy)
        XCTAssertEqual(header.addresses, .unspecified)
    }

    func testEncoderReproducesCRCVector() throws {
        let header = ProxyHeader(
            command: .proxy,
            addresses: .ipv4(
                source: IPv4Address(0, 0, 0, 0), sourcePort: 0, destination: IPv4Address(127, 0, 0, 1),
                destinationPort: 25, transport: .stream))
        XCTAssertEqual(
            try header.encoded(crc32c: true),
            bytes(hex: "0D0A0D0A000D0A515549540A 21 11 0013 00000000 7f000001 0000 0019 030004 25c91172"))
        let local = ProxyHeader(command: .local, addresses: .unspecified)
        XCTAssertEqual(
            try local.encoded(crc32c: true),
            bytes(hex: "0D0A0D0A000D0A515549540A 20 00 0007 030004 a9b87e8f"))
    }

    func testV1TCP4Example() throws {
        let line = Array("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n".utf8)
        let (header, n) = try XCTUnwrap(decodeHeader(line))
        XCTAssertEqual(n, 47)
        XCTAssertEqual(header.version, .v1)
        XCTAssertEqual(
            header.addresses,
            .ipv4(
                source: IPv4Address(192, 168, 0, 1), sourcePort: 56324,
                destination: IPv4Address(192, 168, 0, 11), destinationPort: 443,
                transport: .stream))
    }

    func testV1TCP6Example() throws {
        let line = Array("PROXY TCP6 ffff:f...f:ffff ffff:f...f:fffe 65535 65535\r\n".utf8)
        XCTAssertEqual(decodeError(line), .v1InvalidAddress("ffff:f...f:ffff"))
        let real = Array("PROXY TCP6 2001:2::1 2001:2:0:0:0:0:0:10 65535 1\r\n".utf8)
        let (header, _) = try XCTUnwrap(decodeHeader(real))
        guard case .ipv6(let s, 65535, let d, 1, .stream) = header.addresses else { return XCTFail("\(header)") }
        XCTAssertEqual(s.description, "2001:2::1")
        XCTAssertEqual(d.description, "2001:2::10")
    }

    func testV1UnknownShortAndLongForms() throws {
        let (short, n) = try XCTUnwrap(decodeHeader(Array("PROXY UNKNOWN\r\n".utf8)))
        XCTAssertEqual(n, 15)
        XCTAssertEqual(short.addresses, .unspecified)
        let (long, _) = try XCTUnwrap(decodeHeader(Array("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n".utf8)))
        XCTAssertEqual(long.addresses, .unspecified)
    }

    func testLocalIsWrittenAsUnspecWithLengthZero() throws {
        let header = ProxyHeader(
            command: .local,
            addresses: .ipv4(
                source: IPv4Address(1, 2, 3, 4), sourcePort: 1, destination: IPv4Address(5, 6, 7, 8),
                destinationPort: 2, transport: .stream))
        XCTAssertEqual(try header.encoded(), proxyV2Signature + [0x20, 0x00, 0x00, 0x00])
    }

    func testV1UnknownIsWrittenInShortForm() throws {
        let header = ProxyHeader(version: .v1, command: .local, addresses: .unspecified)
        XCTAssertEqual(try header.encoded(), Array("PROXY UNKNOWN\r\n".utf8))
    }

    func testTCP4HeaderBytesAreExact() throws {
        let header = ProxyHeader(
            addresses: .ipv4(
                source: IPv4Address(198, 18, 1, 2), sourcePort: 43976,
                destination: IPv4Address(198, 18, 0, 10), destinationPort: 80,
                transport: .stream))
        XCTAssertEqual(
            try header.encoded(),
            bytes(hex: "0d0a0d0a000d0a515549540a 21 11 000c c6120102 c612000a abc8 0050"))
    }

    func testTypedTLVsRoundTrip() throws {
        let ssl = ProxySSLInfo(
            clientFlags: 0x07, verify: 0,
            subTLVs: [
                ProxyTLV(type: 0x21, value: Array("TLSv1.3".utf8)), ProxyTLV(type: 0x22, value: Array("client".utf8)),
                ProxyTLV(type: 0x23, value: Array("TLS_AES_128_GCM_SHA256".utf8))
            ])
        let header = ProxyHeader(
            addresses: .unspecified,
            tlvs: [
                .alpn("h2"), .authority("example.com"), .uniqueID(Array("abc".utf8)), .ssl(ssl), .netns("blue"),
                .awsVPCEndpointID("vpce-08d2bf15fac5001c9"), .azureLinkID(0x1234_5678), .gcpPSCConnectionID(0x0102_0304_0506_0708),
                .noop(3), ProxyTLV(type: 0xE5, value: Array("tenant-42".utf8))
            ])
        let (decoded, _) = try XCTUnwrap(decodeHeader(try header.encoded(crc32c: true)))
        XCTAssertEqual(decoded.alpn, Array("h2".utf8))
        XCTAssertEqual(decoded.authority, "example.com")
        XCTAssertEqual(decoded.uniqueID, Array("abc".utf8))
        XCTAssertEqual(try decoded.ssl()?.version, "TLSv1.3")
        XCTAssertEqual(try decoded.ssl()?.commonName, "client")
        XCTAssertEqual(try decoded.ssl()?.cipher, "TLS_AES_128_GCM_SHA256")
        XCTAssertEqual(decoded.netns, "blue")
        XCTAssertEqual(decoded.awsVPCEndpointID, "vpce-08d2bf15fac5001c9")
        XCTAssertEqual(decoded.azureLinkID, 0x1234_5678)
        XCTAssertEqual(decoded.gcpPSCConnectionID, 0x0102_0304_0506_0708)
        XCTAssertNotNil(decoded.crc32c)
        XCTAssertEqual(decoded.tlvs.first { $0.type == 0xE5 }?.value, Array("tenant-42".utf8))
    }

    func testEachCloudTLVGivesItsTypedValueAndOnlyItsOwn() {
        let aws = ProxyTLV.awsVPCEndpointID("vpce-0abc"), azure = ProxyTLV.azureLinkID(305_419_896)
        let gcp = ProxyTLV.gcpPSCConnectionID(72_623_859_790_382_856)
        XCTAssertEqual(aws.awsVPCEndpointID, "vpce-0abc")
        XCTAssertEqual(azure.azureLinkID, 305_419_896)
        XCTAssertEqual(gcp.gcpPSCConnectionID, 72_623_859_790_382_856)
        for other in [aws, azure, gcp, ProxyTLV(type: 0xE5, value: Array(repeating: 1, count: 8))] {
            if other != aws { XCTAssertNil(other.awsVPCEndpointID, "\(other)") }
            if other != azure { XCTAssertNil(other.azureLinkID, "\(other)") }
            if other != gcp { XCTAssertNil(other.gcpPSCConnectionID, "\(other)") }
        }
        XCTAssertNil(ProxyTLV(type: 0xEA, value: [0x02] + Array("x".utf8)).awsVPCEndpointID, "another AWS subtype")
        XCTAssertNil(ProxyTLV(type: 0xE0, value: [1, 2, 3]).gcpPSCConnectionID, "not 8 bytes")
    }

    func testAzureLinkIDIsLittleEndian() {
        XCTAssertEqual(ProxyTLV.azureLinkID(0x0102_0304).value, [0x01, 0x04, 0x03, 0x02, 0x01])
    }

    func testIPv6TextIsRFC5952() {
        XCTAssertEqual(IPv6Address("2001:0db8:0:0:1:0:0:1")?.description, "2001:db8::1:0:0:1")
        XCTAssertEqual(IPv6Address("0:0:0:0:0:0:0:0")?.description, "::")
        XCTAssertEqual(IPv6Address("::ffff:198.18.0.1")?.description, "::ffff:c612:1")
        XCTAssertEqual(IPv6Address("2001:2:0:1:0:0:0:2")?.description, "2001:2:0:1::2")
        XCTAssertNil(IPv6Address("1::2::3"))
        XCTAssertNil(IPv6Address("12345::"))
        XCTAssertNil(IPv6Address("fe80::1%eth0"))
    }
}
