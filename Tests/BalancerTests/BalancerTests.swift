import Balancer
import Datapath
import DatapathABI
import ProxyProtocol
import XCTest

final class EndpointParsingTests: XCTestCase {
    func testParsesIPv4AndBracketedIPv6() throws {
        XCTAssertEqual(try Endpoint(parsing: "198.18.0.10:80").description, "198.18.0.10:80")
        XCTAssertEqual(try Endpoint(parsing: "[2001:2::10]:443").description, "[2001:2::10]:443")
    }

    func testRejectsMalformedEndpoints() {
        for bad in ["198.18.0.10", "198.18.0.10:", "198.18.0.10:0", "198.18.0.10:65536", "198.18.0.10:+80",
                    "198.18.0.010:80", "2001:2::10:80", "[2001:2::10]80", "[nope]:80", ":80", "host:80"] {
            XCTAssertThrowsError(try Endpoint(parsing: bad), bad)
        }
    }

    func testBackendWeights() throws {
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080").weight, 1)
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080,weight=7").weight, 7)
        for bad in ["198.18.2.2:8080,weight=0", "198.18.2.2:8080,weight=10001", "198.18.2.2:8080,weight=",
                    "198.18.2.2:8080,w=2", "198.18.2.2:8080,"] {
            XCTAssertThrowsError(try Backend(parsing: bad), bad)
        }
    }
}

final class ServiceSpecTests: XCTestCase {
    func spec(_ backends: [String], proxy: ProxyMode = .v2) throws -> ServiceSpec {
        ServiceSpec(vip: try Endpoint(parsing: "198.18.0.10:80"), backends: try backends.map { try Backend(parsing: $0) },
                    proxy: proxy)
    }

    func testValidationCatchesContradictions() throws {
        XCTAssertThrowsError(try spec(["198.18.2.2:80", "198.18.2.2:80"]).validate())
        XCTAssertThrowsError(try spec(["198.18.0.10:80"]).validate())
        XCTAssertThrowsError(try spec(["[2001:2::2]:80"]).validate())
        XCTAssertThrowsError(try spec(["127.0.0.1:80"]).validate())
        var s = try spec(["198.18.2.2:80"], proxy: .v1)
        s.uniqueID = true
        XCTAssertThrowsError(try s.validate())
        XCTAssertNoThrow(try spec(["198.18.2.2:80"]).validate())
    }

    func testCustomTLVParsing() throws {
        XCTAssertEqual(try ServiceSpec.parseTLV("0xE5=tenant-42"), ProxyTLV(type: 0xE5, value: Array("tenant-42".utf8)))
        XCTAssertEqual(try ServiceSpec.parseTLV("0xe0=hex:0a0B"), ProxyTLV(type: 0xE0, value: [0x0A, 0x0B]))
        for bad in ["0x01=x", "0xF0=x", "E5=x", "0xE5", "0xE5=", "0xE5=hex:abc", "0xE5=hex:zz"] {
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
    }
}

final class RingTests: XCTestCase {
    func testSlotsFollowWeightsAndInterleave() {
        let ring = Ring.build(weights: [1, 3])
        XCTAssertEqual(ring.count, 256)
        XCTAssertEqual(ring.filter { $0 == 0 }.count, 64)
        XCTAssertEqual(ring.filter { $0 == 1 }.count, 192)
        var longestRun = 0, run = 0
        for (i, v) in ring.enumerated() { run = i > 0 && ring[i - 1] == v ? run + 1 : 1; longestRun = max(longestRun, run) }
        XCTAssertLessThanOrEqual(longestRun, 3, "interleaved, not in runs")
    }

    func testEveryBackendGetsASlotAndTheRingIsDeterministic() {
        let weights = [10_000] + Array(repeating: 1, count: 99)
        let ring = Ring.build(weights: weights)
        XCTAssertEqual(Set(ring).count, 100)
        XCTAssertEqual(ring, Ring.build(weights: weights))
    }
}

final class ControllerTests: XCTestCase {
    let services = InMemoryMap<ppctl_service_key, ppctl_service>()
    let rings = InMemoryMap<UInt32, ppctl_ring>()
    let backends = InMemoryMap<UInt32, ppctl_backend>()
    let tlvs = InMemoryMap<UInt32, ppctl_service_tlvs>()
    lazy var controller = Controller(ServiceTables(services: services, rings: rings, backends: backends, tlvs: tlvs))

    func spec(_ vip: String, _ backends: [String]) throws -> ServiceSpec {
        ServiceSpec(vip: try Endpoint(parsing: vip), backends: try backends.map { try Backend(parsing: $0) }, proxy: .v2)
    }

    func testAddListDelete() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080,weight=2"]))
        try controller.addService(spec("198.18.0.11:80", ["198.18.2.2:8080"]))
        XCTAssertEqual(controller.services().map(\.spec.vip.description), ["198.18.0.10:80", "198.18.0.11:80"])
        XCTAssertEqual(controller.services()[0].spec.backends.map(\.weight), [1, 2])
        try controller.deleteService(Endpoint(parsing: "198.18.0.10:80"))
        XCTAssertEqual(controller.services().count, 1)
        XCTAssertEqual(backends.count, 1)
    }

    func testFailedWriteRollsBackEverything() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080"]))
        let before = (services.count, backends.count)
        services.failNextUpdate = true         // the last write of the transaction fails
        XCTAssertThrowsError(try controller.addService(spec("198.18.0.11:80", ["198.18.2.2:1", "198.18.2.2:2"])))
        XCTAssertEqual(services.count, before.0)
        XCTAssertEqual(backends.count, before.1, "backends written before the failure were removed")
        XCTAssertNil(controller.service(try Endpoint(parsing: "198.18.0.11:80")))
    }

    func testBackendDeleteMovesTheLastIntoTheGap() throws {
        let vip = try Endpoint(parsing: "198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:1", "198.18.2.2:2", "198.18.2.2:3"]))
        try controller.deleteBackend(vip, try Endpoint(parsing: "198.18.2.2:1"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.map(\.endpoint.port), [3, 2])
        try controller.addBackend(vip, try Backend(parsing: "198.18.2.2:4"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.count, 3)
        XCTAssertThrowsError(try controller.addBackend(vip, try Backend(parsing: "198.18.2.2:4")))
    }
}
