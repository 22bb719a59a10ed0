import ProxyProtocol
import XCTest

/// Random headers encode then decode to the same value; every split point of a header
/// gives need-more then the header.
final class PropertyTests: XCTestCase {
    static func randomHeader(_ g: inout SeededGenerator) -> ProxyHeader {
        func v4() -> IPv4Address { IPv4Address(hostOrder: UInt32.random(in: 0...UInt32.max, using: &g)) }
        func v6() -> IPv6Address { IPv6Address(bytes: (0..<16).map { _ in UInt8.random(in: 0...255, using: &g) })! }
        func port() -> UInt16 { UInt16.random(in: 0...65535, using: &g) }
        if Bool.random(using: &g) {
            switch Int.random(in: 0..<3, using: &g) {
            case 0: return ProxyHeader(version: .v1, command: .local, addresses: .unspecified)
            case 1:
                return ProxyHeader(
                    version: .v1,
                    addresses: .ipv4(
                        source: v4(), sourcePort: port(), destination: v4(),
                        destinationPort: port(), transport: .stream))
            default:
                return ProxyHeader(
                    version: .v1,
                    addresses: .ipv6(
                        source: v6(), sourcePort: port(), destination: v6(),
                        destinationPort: port(), transport: .stream))
            }
        }
        let transport: ProxyHeader.Transport = Bool.random(using: &g) ? .stream : .datagram
        let command: ProxyHeader.Command = Int.random(in: 0..<5, using: &g) == 0 ? .local : .proxy
        var addresses: ProxyHeader.Addresses = .unspecified
        if command == .proxy {
            switch Int.random(in: 0..<4, using: &g) {
            case 0: addresses = .unspecified
            case 1: addresses = .ipv4(source: v4(), sourcePort: port(), destination: v4(), destinationPort: port(), transport: transport)
            case 2: addresses = .ipv6(source: v6(), sourcePort: port(), destination: v6(), destinationPort: port(), transport: transport)
            default:
                func path() -> [UInt8] { (0..<Int.random(in: 0...108, using: &g)).map { _ in UInt8.random(in: 1...255, using: &g) } }
                addresses = .unix(source: path(), destination: path(), transport: transport)
            }
        }
        var tlvs: [ProxyTLV] = []
        for _ in 0..<Int.random(in: 0...4, using: &g) {
            let type = [0x01, 0x02, 0x04, 0x05, 0x30, 0xE0, 0xE5, 0xEA, 0xEE, 0xF1][Int.random(in: 0..<10, using: &g)]
            let count = Int.random(in: 0...(type == 0x05 ? 128 : 200), using: &g)
            tlvs.append(ProxyTLV(type: UInt8(type), value: (0..<count).map { _ in UInt8.random(in: 0...255, using: &g) }))
        }
        return ProxyHeader(version: .v2, command: command, addresses: addresses, tlvs: tlvs)
    }

    func testRandomHeadersRoundTrip() throws {
        var g = SeededGenerator(seed: 0x5050_C7C7)
        for i in 0..<3000 {
            let header = Self.randomHeader(&g)
            let crc = header.version == .v2 && Bool.random(using: &g)
            let encoded = try header.encoded(crc32c: crc)
            let payload: [UInt8] = [0x47, 0x45, 0x54]
            guard case .header(var decoded, let consumed) = ProxyDecoder().decode(encoded + payload) else {
                return XCTFail("case \(i): \(header) did not decode")
            }
            XCTAssertEqual(consumed, encoded.count, "case \(i)")
            if crc {
                XCTAssertEqual(decoded.tlvs.last?.type, 0x03)
                decoded.tlvs.removeLast()
            }
            XCTAssertEqual(decoded, header, "case \(i)")
        }
    }

    func testEverySplitPointGivesNeedMoreThenTheHeader() throws {
        var g = SeededGenerator(seed: 42)
        var headers: [[UInt8]] = [
            Array("PROXY TCP4 198.18.1.2 198.18.0.10 43976 80\r\n".utf8),
            Array("PROXY TCP6 2001:2::1 2001:2::10 65535 443\r\n".utf8),
            Array("PROXY UNKNOWN\r\n".utf8)
        ]
        for _ in 0..<40 { headers.append(try Self.randomHeader(&g).encoded(crc32c: Bool.random(using: &g))) }
        let after: [UInt8] = Array("after".utf8)
        for encoded in headers {
            for split in 1..<encoded.count {
                guard case .needMoreData = ProxyDecoder().decode(Array(encoded[..<split])) else {
                    return XCTFail("split \(split) of \(encoded.count) was not need-more")
                }
                let whole = Array(encoded[..<split]) + Array(encoded[split...]) + after
                guard case .header(_, let consumed) = ProxyDecoder().decode(whole) else {
                    return XCTFail("split \(split): whole header did not decode")
                }
                XCTAssertEqual(consumed, encoded.count)
            }
        }
    }

    /// Random bytes (half of them after the v2 signature): whatever the decoder
    /// says must hold up. A header is exactly its first `consumed` bytes (the same
    /// header from those alone, and none from one byte less, nor from the same bytes
    /// followed by others); "need more" asks for at least one byte and is the answer
    /// for every shorter prefix too; nothing crashes.
    func testRandomBytesDecodeConsistently() {
        var g = SeededGenerator(seed: 99)
        var outcomes = (header: 0, needMore: 0, invalid: 0)
        for i in 0..<20_000 {
            var input = (0..<Int.random(in: 0...120, using: &g)).map { _ in UInt8.random(in: 0...255, using: &g) }
            if Bool.random(using: &g) { input = proxyV2Signature + input }
            switch ProxyDecoder().decode(input) {
            case .header(let header, let consumed):
                outcomes.header += 1
                XCTAssertTrue((1...input.count).contains(consumed), "case \(i)")
                guard case .header(let alone, consumed) = ProxyDecoder().decode(Array(input[..<consumed])) else {
                    return XCTFail("case \(i): the header's own bytes do not decode to it")
                }
                XCTAssertEqual(alone, header, "case \(i)")
                if case .header = ProxyDecoder().decode(Array(input[..<(consumed - 1)])) {
                    XCTFail("case \(i): a header one byte short decoded")
                }
            case .needMoreData(let n):
                outcomes.needMore += 1
                XCTAssertGreaterThanOrEqual(n, 1, "case \(i)")
                for cut in [0, input.count / 2] where cut < input.count {
                    if case .header = ProxyDecoder().decode(Array(input[..<cut])) { XCTFail("case \(i): a prefix decoded") }
                }
            case .invalid:
                outcomes.invalid += 1
            }
        }
        // The generator reaches every outcome, so each branch above was exercised.
        XCTAssertGreaterThan(outcomes.needMore, 0)
        XCTAssertGreaterThan(outcomes.invalid, 0)
    }
}
