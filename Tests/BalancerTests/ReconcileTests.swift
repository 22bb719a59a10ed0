import Balancer
import Datapath
import DatapathABI
import DatapathTesting
import XCTest

/// `Controller.reconcile`, ppctld's one transaction: it changes only its owner's
/// services, rewrites changed ones in place, and refuses what it must not touch.
final class ReconcileTests: XCTestCase {
    let services = InMemoryMap<ppctl_service_key, ppctl_service>(capacity: 64)
    let backends = InMemoryMap<UInt32, ppctl_backend>()
    lazy var tables = ServiceTables(
        services: services, maglev: InMemoryTableMap(), backends: backends,
        tlvs: InMemoryMap(arrayOf: 64, zero: ppctl_service_tlvs()), snatPools: InMemoryMap(arrayOf: 65, zero: ppctl_snat_pool()))

    func spec(_ vip: String, _ backends: [String]) throws -> ServiceSpec {
        ServiceSpec(vip: try Endpoint(parsing: vip), backends: try backends.map { try Backend(parsing: $0) })
    }

    func views() -> [String: ServiceView] {
        Dictionary(uniqueKeysWithValues: Controller(tables).services().map { ($0.spec.vip.description, $0) })
    }

    func testAddsChangesInPlaceAndRemovesOnlyItsOwn() throws {
        try Controller(tables).addService(spec("198.18.0.20:80", ["198.18.2.3:8090"]))
        var result = try Controller(tables).reconcile(
            [spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080"]), spec("198.18.0.11:80", ["198.18.2.2:9000"])], owner: .ppctld)
        XCTAssertEqual(result.added.map(\.description), ["198.18.0.10:80", "198.18.0.11:80"])
        let id = views()["198.18.0.10:80"]!.id
        XCTAssertEqual(views()["198.18.0.10:80"]?.owner, .ppctld)
        XCTAssertEqual(views()["198.18.0.20:80"]?.owner, .cli)

        result = try Controller(tables).reconcile([spec("198.18.0.10:80", ["198.18.2.3:8080,weight=3"])], owner: .ppctld)
        XCTAssertEqual(
            result,
            Reconciliation(
                added: [], changed: [try Endpoint(parsing: "198.18.0.10:80")],
                removed: [try Endpoint(parsing: "198.18.0.11:80")]))
        let web = views()["198.18.0.10:80"]!
        XCTAssertEqual(web.id, id, "changed in place")
        XCTAssertEqual(web.spec.backends.map { "\($0.endpoint),\($0.weight)" }, ["198.18.2.3:8080,3"])
        XCTAssertEqual(backends.keys().filter { $0 >> 8 == id }, [id << 8], "the old second backend is gone")
        XCTAssertEqual(Set(views().keys), ["198.18.0.10:80", "198.18.0.20:80"], "the CLI's service stays")

        XCTAssertTrue(try Controller(tables).reconcile([spec("198.18.0.10:80", ["198.18.2.3:8080,weight=3"])], owner: .ppctld).isEmpty)
    }

    func testRefusesTheCLIsServicesAndLoopsAndChangesNothing() throws {
        try Controller(tables).addService(spec("198.18.0.20:80", ["198.18.2.3:8090"]))
        try Controller(tables).reconcile([spec("198.18.0.10:80", ["198.18.2.2:8080"])], owner: .ppctld)
        let before = [services.snapshot(), backends.snapshot()]
        let cases: [([ServiceSpec], BalancerError)] = [
            ([try spec("198.18.0.20:80", ["198.18.2.2:8080"])], .ownedByAnother("198.18.0.20:80", owner: .cli)),
            ([try spec("198.18.0.10:80", ["198.18.0.20:80"])], .backendIsAVIP("198.18.0.20:80")),
            ([try spec("198.18.2.3:8090", ["198.18.2.2:8080"])], .vipIsABackend("198.18.2.3:8090"))
        ]
        for (specs, expected) in cases {
            XCTAssertThrowsError(try Controller(tables).reconcile(specs, owner: .ppctld)) { XCTAssertEqual($0 as? BalancerError, expected) }
            XCTAssertEqual([services.snapshot(), backends.snapshot()], before)
        }
    }
}
