import ProxyProtocol
import XCTest

/// One test per class of invalid input (REFERENCE.md §1), each asserting its own error.
final class InvalidHeaderTests: XCTestCase {
    func testTruncatedInputIsNeedMoreNotGarbage() {
        let full = v2(0x21, 0x11, body: ipv4Body)
        for n in 1..<full.count {
            guard case .needMoreData = ProxyDecoder().decode(Array(full[..<n])) else {
                return XCTFail("prefix of \(n) bytes was not need-more")
            }
        }
    }

    func testBadSignature() {
        XCTAssertEqual(decodeError(Array("GET / HTTP/1.1\r\n".utf8)), .badSignature)
        var sig = v2(0x21, 0x11, body: ipv4Body)
        sig[7] = 0x52
        XCTAssertEqual(decodeError(sig), .badSignature)
        XCTAssertEqual(decodeError(Array("PROXX TCP4".utf8)), .badSignature)
    }

    func testVersionOtherThanTwo() {
        XCTAssertEqual(decodeError(v2(0x11, 0x11, body: ipv4Body)), .unsupportedVersion(1))
        XCTAssertEqual(decodeError(v2(0x31, 0x11, body: ipv4Body)), .unsupportedVersion(3))
    }

    func testCommandAboveOne() {
        XCTAssertEqual(decodeError(v2(0x22, 0x11, body: ipv4Body)), .invalidCommand(2))
        XCTAssertEqual(decodeError(v2(0x2F, 0x11, body: ipv4Body)), .invalidCommand(15))
    }

    func testUnknownFamilyOrTransport() {
        XCTAssertEqual(decodeError(v2(0x21, 0x13, body: ipv4Body)), .unknownFamily(0x13))
        XCTAssertEqual(decodeError(v2(0x21, 0x41, body: ipv4Body)), .unknownFamily(0x41))
        XCTAssertEqual(decodeError(v2(0x21, 0x10, body: ipv4Body)), .unknownFamily(0x10))
    }

    func testLengthTooShortForFamily() {
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: Array(ipv4Body[..<8]))),
            .lengthTooShortForFamily(family: 0x11, length: 8))
        XCTAssertEqual(
            decodeError(v2(0x21, 0x21, body: ipv4Body)),
            .lengthTooShortForFamily(family: 0x21, length: 12))
    }

    func testTLVHeaderRunningPastTheEnd() {
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x04, 0x00])),
            .truncatedTLVHeader(offset: 28))
    }

    func testTLVValueRunningPastTheEnd() {
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x04, 0x00, 0x05, 0, 0])),
            .tlvOverrunsHeader(type: 0x04, length: 5))
    }

    func testTLVEndingShortOfTheEnd() {
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x04, 0x00, 0x01, 0, 0xE5])),
            .truncatedTLVHeader(offset: 32))
    }

    func testBadCRC() {
        var h = bytes(hex: "0D0A0D0A000D0A515549540A 21 11 0013 00000000 7f000001 0000 0019 030004 25c91172")
        h[h.count - 1] ^= 1
        XCTAssertEqual(decodeError(h), .crc32cMismatch(expected: 0x25c9_1172, actual: 0x25c9_1173))
        h = bytes(hex: "0D0A0D0A000D0A515549540A 21 11 0013 00000000 7f000002 0000 0019 030004 25c91172")
        guard case .crc32cMismatch = decodeError(h) else { return XCTFail("address change not caught") }
    }

    func testCRCTLVWhoseLengthIsNotFour() {
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x03, 0x00, 0x03, 1, 2, 3])),
            .badCRC32CLength(3))
    }

    func testOversizedTLVAndHeader() {
        var config = ProxyDecoder.Configuration()
        config.maxTLVValueLength = 16
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0xE5, 0x00, 17] + Array(repeating: 0x41, count: 17)), config),
            .tlvTooLong(type: 0xE5, length: 17, limit: 16))
        config.maxHeaderLength = 64
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x04, 0x00, 40] + Array(repeating: 0, count: 40)), config),
            .headerTooLong(length: 71, limit: 64))
        XCTAssertEqual(
            decodeError(v2(0x21, 0x11, body: ipv4Body + [0x05, 0x00, 129] + Array(repeating: 0x41, count: 129))),
            .uniqueIDTooLong(129))
    }

    func testHugeLengthIsRejectedBeforeItArrives() {
        XCTAssertEqual(
            decodeError(proxyV2Signature + [0x21, 0x11, 0xFF, 0xFF]),
            .headerTooLong(length: 65551, limit: 4096))
    }

    func testV1WithoutCRLFWithin107Bytes() {
        let line = Array(("PROXY TCP4 " + String(repeating: "1", count: 120)).utf8)
        XCTAssertEqual(decodeError(line), .v1MissingCRLF)
        XCTAssertEqual(decodeError(Array(("PROXY UNKNOWN " + String(repeating: "x", count: 92) + "\r\n").utf8)), .v1MissingCRLF)
    }

    func testV1BareCROrLF() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4\n".utf8)), .v1BareCROrLF)
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4\rx\n".utf8)), .v1BareCROrLF)
    }

    func testV1WrongWordOrFieldCount() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n".utf8)), .v1WrongFieldCount(5))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n".utf8)), .v1WrongFieldCount(7))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n".utf8)), .v1WrongFieldCount(7))
        XCTAssertEqual(decodeError(Array("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n".utf8)), .v1UnknownProtocol("TCP5"))
    }

    func testV1BadAddressText() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".utf8)), .v1InvalidAddress("1.2.3"))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n".utf8)), .v1InvalidAddress("1.2.3.256"))
        XCTAssertEqual(decodeError(Array("PROXY TCP6 2001::g 2001::1 1 2\r\n".utf8)), .v1InvalidAddress("2001::g"))
    }

    func testV1FamilyAddressMismatch() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 2001::1 5.6.7.8 1 2\r\n".utf8)), .v1FamilyMismatch("2001::1"))
        XCTAssertEqual(decodeError(Array("PROXY TCP6 2001::1 5.6.7.8 1 2\r\n".utf8)), .v1FamilyMismatch("5.6.7.8"))
    }

    func testV1LeadingZeros() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n".utf8)), .v1LeadingZero("1.2.3.04"))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n".utf8)), .v1LeadingZero("080"))
    }

    func testV1PortsAboveRangeOrSigned() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n".utf8)), .v1InvalidPort("65536"))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n".utf8)), .v1InvalidPort("+80"))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n".utf8)), .v1InvalidPort("-1"))
    }

    func testV1TrailingGarbageInTheLine() {
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 garbage\r\n".utf8)), .v1WrongFieldCount(7))
        XCTAssertEqual(decodeError(Array("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\u{1}\r\n".utf8)), .v1InvalidCharacter(1))
    }

    func testMalformedSSLTLV() {
        let h = v2(0x21, 0x11, body: ipv4Body + [0x20, 0x00, 0x06, 0x01, 0, 0, 0, 0, 0x21])
        guard case .header(let header, _) = ProxyDecoder().decode(h) else { return XCTFail() }
        XCTAssertThrowsError(try header.ssl())
    }

    func testVersionsNotAccepted() {
        var config = ProxyDecoder.Configuration()
        config.acceptV1 = false
        XCTAssertEqual(decodeError(Array("PROXY UNKNOWN\r\n".utf8), config), .versionNotAccepted(.v1))
        config = .init()
        config.acceptV2 = false
        XCTAssertEqual(decodeError(v2(0x21, 0x11, body: ipv4Body), config), .versionNotAccepted(.v2))
    }
}
