import Balancer
import DatapathABI
import ProxyProtocol
import XCTest

/// What a service may be, checked without the maps.
final class ServiceSpecTests: XCTestCase {
    func spec(_ backends: [String], vip: String = "198.18.0.10:80", proxy: ProxyMode = .v2) throws -> ServiceSpec {
        ServiceSpec(vip: try Endpoint(parsing: vip), backends: try backends.map { try Backend(parsing: $0) }, proxy: proxy)
    }

    func error(_ body: () throws -> Void) -> BalancerError? {
        do {
            try body()
            return nil
        } catch { return error as? BalancerError }
    }

    func testAValidServiceValidates() throws {
        XCTAssertNoThrow(try spec(["198.18.2.2:80", "198.18.2.3:80,weight=3"]).validate())
        XCTAssertNoThrow(try spec(["198.18.0.10:8080"]).validate(), "the VIP's address on another port is a backend")
        XCTAssertNoThrow(try spec(["[2001:2:0:2::2]:80"], vip: "[2001:2::10]:80").validate())
        XCTAssertNoThrow(try spec([], proxy: .none).validate(), "no backends: the service refuses connections")
    }

    func testUnusableAddressesAreRefusedWherever() throws {
        for address in [
            "0.0.0.0", "0.1.2.3", "255.255.255.255", "127.0.0.1", "127.1.2.3", "224.0.0.1",
            "239.255.255.255", "240.0.0.1", "169.254.0.1", "169.254.255.254"
        ] {
            XCTAssertEqual(error { try spec(["198.18.2.2:80"], vip: "\(address):80").validate() }.map(kind), "unusableAddress", address)
            XCTAssertEqual(error { try spec(["\(address):80"]).validate() }.map(kind), "unusableAddress", address)
            var s = try spec(["198.18.2.2:80"])
            s.snat = [IPAddress(address)!]
            XCTAssertEqual(error { try s.validate() }.map(kind), "unusableAddress", "--snat \(address)")
        }
        for address in ["::", "::1", "ff02::1", "fe80::1", "febf::1"] {
            XCTAssertEqual(error { try spec(["[2001:2::2]:80"], vip: "[\(address)]:80").validate() }.map(kind), "unusableAddress", address)
            XCTAssertEqual(error { try spec(["[\(address)]:80"], vip: "[2001:2::10]:80").validate() }.map(kind), "unusableAddress", address)
        }
        XCTAssertEqual(
            error { try spec(["198.18.2.2:80"], vip: "224.0.0.1:80").validate() }?.description,
            "address 224.0.0.1 cannot be used: it is a multicast address")
    }

    func testLinkLocalIsRefusedInBothFamilies() throws {
        XCTAssertEqual(
            error { try spec(["169.254.1.1:80"]).validate() }?.description,
            "address 169.254.1.1 cannot be used: it is a link-local address")
        XCTAssertEqual(
            error { try spec(["[fe80::1]:80"], vip: "[2001:2::10]:80").validate() }?.description,
            "address fe80::1 cannot be used: it is a link-local address")
        XCTAssertNoThrow(try spec(["169.253.255.255:80", "169.255.0.1:80"]).validate(), "only 169.254/16")
        XCTAssertNoThrow(try spec(["[fec0::1]:80"], vip: "[2001:2::10]:80").validate(), "only fe80::/10")
    }

    func testIPv4MappedAddressesAreRefusedSayingWhatToWrite() throws {
        for mapped in [
            "::ffff:127.0.0.1", "::ffff:0.0.0.0", "::ffff:255.255.255.255", "::ffff:224.0.0.1",
            "::ffff:198.18.202.1", "0:0:0:0:0:ffff:c612:ca01"
        ] {
            let v4 = IPAddress(mapped)?.ipv4Mapped?.description ?? "?"
            let expected = BalancerError.ipv4Mapped("::ffff:\(v4)", ipv4: v4)
            XCTAssertEqual(error { try spec(["[2001:2::2]:80"], vip: "[\(mapped)]:80").validate() }, expected, "VIP \(mapped)")
            XCTAssertEqual(error { try spec(["[\(mapped)]:80"], vip: "[2001:2::10]:80").validate() }, expected, "backend \(mapped)")
            var s = try spec(["[2001:2::2]:80"], vip: "[2001:2::10]:80")
            s.snat = [IPAddress(mapped)!]
            XCTAssertEqual(error { try s.validate() }, expected, "--snat \(mapped)")
        }
        XCTAssertEqual(
            error { try spec(["[::ffff:127.0.0.1]:8080"]).validate() }?.description,
            "address ::ffff:127.0.0.1 is IPv4-mapped: write the IPv4 address 127.0.0.1 "
                + "(ppctl does not take IPv4-mapped IPv6 addresses)")
        XCTAssertNil(IPAddress("::ffef:198.18.0.1")?.ipv4Mapped)
        XCTAssertNil(IPAddress("198.18.0.1")?.ipv4Mapped)
        XCTAssertNoThrow(try spec(["[64:ff9b::c612:ca01]:80"], vip: "[2001:2::10]:80").validate(), "NAT64 is not mapped")
    }

    func testSNATEqualToTheVIPIsRefused() throws {
        var s = try spec(["198.18.2.2:80"])
        s.snat = [IPAddress("198.18.0.10")!]
        XCTAssertEqual(error { try s.validate() }, .snatIsVIP("198.18.0.10"))
        s.snat = [IPAddress("198.18.2.1")!]
        XCTAssertNoThrow(try s.validate())
    }

    func testContradictionsAreRefused() throws {
        XCTAssertEqual(
            error { try spec(["198.18.2.2:80", "198.18.2.2:80"]).validate() },
            .duplicateBackend("198.18.2.2:80"))
        XCTAssertEqual(error { try spec(["198.18.0.10:80"]).validate() }, .backendIsVIP("198.18.0.10:80"))
        XCTAssertEqual(error { try spec(["[2001:2::2]:80"]).validate() }.map(kind), "mixedFamilies")
        var s = try spec(["198.18.2.2:80"])
        s.snat = [IPAddress("2001:2::1")!]
        XCTAssertEqual(error { try s.validate() }.map(kind), "mixedFamilies", "--snat of the other family")
        var weighted = try spec(["198.18.2.2:80"])
        weighted.backends[0].weight = 0
        XCTAssertEqual(error { try weighted.validate() }.map(kind), "malformedEndpoint", "weights are checked, however made")
    }

    func testBackendLimitIsTheRingSize() throws {
        let many = (0..<ServiceSpec.maxBackends).map { "198.18.2.2:\(1000 + $0)" }
        XCTAssertEqual(ServiceSpec.maxBackends, Int(PPCTL_MAX_SERVICE_BACKENDS))
        XCTAssertNoThrow(try spec(many).validate())
        XCTAssertEqual(
            error { try spec(many + ["198.18.2.3:80"]).validate() },
            .tooManyBackends(ServiceSpec.maxBackends + 1, limit: ServiceSpec.maxBackends))
    }

    func testHeaderOptionsNeedV2() throws {
        for proxy in [ProxyMode.none, .v1] {
            var s = try spec(["198.18.2.2:80"], proxy: proxy)
            s.uniqueID = true
            XCTAssertEqual(error { try s.validate() }.map(kind), "contradiction", "\(proxy) with --unique-id")
            s.uniqueID = false
            s.crc32c = true
            XCTAssertEqual(error { try s.validate() }.map(kind), "contradiction", "\(proxy) with --crc32c")
            s.crc32c = false
            s.tlvs = [ProxyTLV(type: 0xE5, value: [1])]
            XCTAssertEqual(error { try s.validate() }.map(kind), "contradiction", "\(proxy) with --tlv")
        }
        var s = try spec(["198.18.2.2:80"])
        s.tlvs = [ProxyTLV(type: 0xE5, value: Array(repeating: 0x41, count: Int(PPCTL_MAX_SERVICE_TLV_LEN) - 3))]
        XCTAssertNoThrow(try s.validate(), "TLVs that just fit")
        s.tlvs[0].value.append(0x41)
        XCTAssertEqual(error { try s.validate() }.map(kind), "invalidTLV", "one byte too many")
    }

    func testCustomTLVParsing() throws {
        XCTAssertEqual(try ServiceSpec.parseTLV("0xE5=tenant-42"), ProxyTLV(type: 0xE5, value: Array("tenant-42".utf8)))
        XCTAssertEqual(try ServiceSpec.parseTLV("0xe0=hex:0a0B"), ProxyTLV(type: 0xE0, value: [0x0A, 0x0B]))
        XCTAssertEqual(try ServiceSpec.parseTLV("0xEF=a=b"), ProxyTLV(type: 0xEF, value: Array("a=b".utf8)))
        for bad in [
            "0x01=x", "0xDF=x", "0xF0=x", "E5=x", "0xE5", "0xE5=", "0xE5=hex:", "0xE5=hex:abc", "0xE5=hex:zz",
            "0x=x", "0xE5E5=x"
        ] {
            XCTAssertThrowsError(try ServiceSpec.parseTLV(bad), bad)
        }
    }

    func testLargestHeaderIsComputedForTheNginxWarning() throws {
        var s = try spec(["198.18.2.2:80"])
        XCTAssertEqual(s.maxHeaderLength, 28)
        s.uniqueID = true
        s.crc32c = true
        s.tlvs = [ProxyTLV(type: 0xE5, value: Array(repeating: 0x41, count: 60))]
        XCTAssertEqual(s.maxHeaderLength, 28 + 63 + 19 + 7)
        XCTAssertGreaterThan(s.maxHeaderLength, 107)
        XCTAssertEqual(try spec(["198.18.2.2:80"], proxy: .v1).maxHeaderLength, 56)
        XCTAssertEqual(try spec(["198.18.2.2:80"], proxy: .none).maxHeaderLength, 0)
    }

    /// The case's name, to compare errors whose texts are long.
    func kind(_ e: BalancerError) -> String { String(String(describing: Mirror(reflecting: e).children.first?.label ?? "\(e)")) }
}
