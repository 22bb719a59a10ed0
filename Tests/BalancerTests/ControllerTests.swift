import Balancer
import Datapath
import DatapathABI
import DatapathTesting
import XCTest
import ProxyProtocol

/// The controller against in-memory maps: what it writes, and that a failed change
/// leaves every map byte for byte as it was.
final class ControllerTests: XCTestCase {
    // Arrays as in the kernel, but only as long as the tests need.
    let services = InMemoryMap<ppctl_service_key, ppctl_service>(capacity: 64)
    let maglev = InMemoryTableMap()
    let backends = InMemoryMap<UInt32, ppctl_backend>()
    let tlvs = InMemoryMap<UInt32, ppctl_service_tlvs>(arrayOf: 64, zero: ppctl_service_tlvs())
    let snatPools = InMemoryMap<UInt32, ppctl_snat_pool>(arrayOf: 65, zero: ppctl_snat_pool())
    lazy var tables = ServiceTables(services: services, maglev: maglev, backends: backends, tlvs: tlvs, snatPools: snatPools)
    lazy var controller = Controller(tables)

    func spec(_ vip: String, _ backends: [String]) throws -> ServiceSpec {
        ServiceSpec(vip: try Endpoint(parsing: vip), backends: try backends.map { try Backend(parsing: $0) }, proxy: .v2)
    }

    func endpoint(_ text: String) throws -> Endpoint { try Endpoint(parsing: text) }

    /// Every byte of every map.
    func snapshot() -> [[[UInt8]: [UInt8]]] {
        [services.snapshot(), maglev.snapshot(), backends.snapshot(), tlvs.snapshot(), snatPools.snapshot()]
    }

    // MARK: - Writing

    func testAddListDelete() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080,weight=2"]))
        try controller.addService(spec("198.18.0.11:80", ["198.18.2.2:8080"]))
        XCTAssertEqual(controller.services().map(\.spec.vip.description), ["198.18.0.10:80", "198.18.0.11:80"])
        XCTAssertEqual(controller.services().map(\.id), [0, 1])
        XCTAssertEqual(controller.services()[0].spec.backends.map(\.weight), [1, 2])
        XCTAssertEqual(backends.keys().sorted(), [0, 1, 256], "backend ids are service id << 8 | index")
        XCTAssertThrowsError(try tlvs.delete(0), "arrays cannot delete, as in the kernel")
        try controller.deleteService(endpoint("198.18.0.10:80"))
        XCTAssertEqual(controller.services().count, 1)
        XCTAssertEqual(backends.count, 1)
    }

    func testWhatIsWrittenReadsBackAsTheSpec() throws {
        var s = try spec("198.18.0.10:80", ["198.18.2.2:8080,weight=3", "198.18.2.3:8080"])
        s.snat = [IPAddress("198.18.2.1")!, IPAddress("198.18.2.10")!]
        s.uniqueID = true
        s.crc32c = true
        s.tlvs = [.awsVPCEndpointID("vpce-1"), try ServiceSpec.parseTLV("0xE5=x")]
        try controller.addService(s)
        XCTAssertEqual(controller.service(s.vip)?.spec, s)
        XCTAssertEqual(controller.services().first?.spec, s)
        let members = s.backends.map { Maglev.Member(endpoint: $0.endpoint, weight: $0.weight) }
        XCTAssertEqual(try slots(0), Maglev.build(members, size: Maglev.tableSize(backends: 2), seed: 0))
    }

    /// The Maglev table's slots, as backend indexes.
    func slots(_ id: UInt32) throws -> [UInt16] {
        try XCTUnwrap(maglev.slots(id))
    }

    func testTableSizeFollowsTheConfiguredBackendsAndTheOverride() throws {
        var s = try spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080"])
        try controller.addService(s)
        XCTAssertEqual(maglev.size(0), 2003)
        try controller.setSelection(s.vip, excluding: [try endpoint("198.18.2.2:8080")])
        XCTAssertEqual(maglev.size(0), 2003, "health does not change the size")
        s.tableSize = 65_537
        try controller.reconcile([s], owner: .cli, excluded: [s.vip: [try endpoint("198.18.2.2:8080")]])
        XCTAssertEqual(maglev.size(0), 65_537)
        XCTAssertEqual(controller.service(s.vip)?.spec.tableSize, 65_537, "the override reads back")
        XCTAssertEqual(Set(try slots(0)), [1], "the excluded backend stays out")
        s.tableSize = 65_536
        XCTAssertThrowsError(try controller.reconcile([s], owner: .cli), "not a prime")
    }

    func testRebuildTablesFollowsTheSeedAndKeepsExclusions() throws {
        let s = try spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080", "198.18.2.4:8080"])
        try controller.addService(s)
        try controller.setSelection(s.vip, excluding: [try endpoint("198.18.2.3:8080")])
        XCTAssertEqual(try controller.rebuildTables(), 0, "nothing to do for the same seed")
        var seeded = tables
        seeded.hashSeed = 7
        XCTAssertEqual(try Controller(seeded).rebuildTables(), 1)
        XCTAssertEqual(Set(try slots(0)), [0, 2], "still without the excluded backend")
        let members = s.backends.enumerated().map { Maglev.Member(endpoint: $1.endpoint, weight: 1, selectable: $0 != 1) }
        XCTAssertEqual(try slots(0), Maglev.build(members, size: 4001, seed: 7))
        try maglev.restore([(0, nil)])
        XCTAssertEqual(try Controller(seeded).rebuildTables(all: false), 1, "a service without a table gets one")
        XCTAssertEqual(Set(try slots(0)), [0, 1, 2])
    }

    func testSelectionLeavesExcludedBackendsOutOfTheRingOnly() throws {
        let vip = try endpoint("198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080,weight=2", "198.18.2.4:8080"]))
        let before = backends.snapshot()
        try controller.setSelection(vip, excluding: [try endpoint("198.18.2.3:8080")])
        XCTAssertEqual(Set(try slots(0)), [0, 2], "index 1 is out of the table")
        XCTAssertEqual(try slots(0).filter { $0 == 0 }.count, 4001 / 2 + 1, "the others share it by weight")
        XCTAssertEqual(backends.snapshot(), before, "backends are not touched")
        XCTAssertEqual(controller.service(vip)?.spec.backends.count, 3, "the service still has all three")

        // Every backend out: every slot says so, and the datapath refuses.
        try controller.setSelection(vip, excluding: Set(controller.service(vip)!.spec.backends.map(\.endpoint)))
        XCTAssertEqual(Set(try slots(0)), [Maglev.none])
        try controller.setSelection(vip, excluding: [])
        XCTAssertEqual(Set(try slots(0)), [0, 1, 2])

        // A reconcile that rewrites the service keeps the excluded backend out.
        var changed = try spec("198.18.0.10:80", ["198.18.2.2:8080", "198.18.2.3:8080", "198.18.2.4:8080"])
        changed.proxy = .v1
        try controller.reconcile([changed], owner: .cli, excluded: [vip: [try endpoint("198.18.2.2:8080")]])
        XCTAssertEqual(Set(try slots(0)), [1, 2])
        XCTAssertThrowsError(try controller.setSelection(try endpoint("198.18.0.99:80"), excluding: []))
    }

    func testFreedServiceIDsAreReused() throws {
        for i in 0..<3 { try controller.addService(spec("198.18.0.\(10 + i):80", ["198.18.2.2:80"])) }
        try controller.deleteService(endpoint("198.18.0.11:80"))
        try controller.addService(spec("198.18.0.20:80", ["198.18.2.2:80"]))
        XCTAssertEqual(controller.service(try endpoint("198.18.0.20:80"))?.id, 1)
        // A new controller (the next command) finds the same free ids from the maps.
        try controller.deleteService(endpoint("198.18.0.10:80"))
        try Controller(tables).addService(spec("198.18.0.21:80", ["198.18.2.2:80"]))
        XCTAssertEqual(controller.service(try endpoint("198.18.0.21:80"))?.id, 0)
    }

    func testRefusals() throws {
        let vip = try endpoint("198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:80"]))
        let before = snapshot()
        func refused(_ expected: BalancerError, _ body: () throws -> Void, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { XCTAssertEqual($0 as? BalancerError, expected, line: line) }
            XCTAssertEqual(snapshot(), before, "nothing changed", line: line)
        }
        refused(.serviceExists("198.18.0.10:80")) { try controller.addService(spec("198.18.0.10:80", ["198.18.2.3:80"])) }
        refused(.unknownService("198.18.0.99:80")) { try controller.deleteService(endpoint("198.18.0.99:80")) }
        refused(.unknownService("198.18.0.99:80")) {
            try controller.addBackend(endpoint("198.18.0.99:80"), Backend(parsing: "198.18.2.3:80"))
        }
        refused(.unknownService("198.18.0.99:80")) { try controller.deleteBackend(endpoint("198.18.0.99:80"), endpoint("198.18.2.2:80")) }
        refused(.unknownBackend("198.18.2.9:80", service: "198.18.0.10:80")) {
            try controller.deleteBackend(vip, endpoint("198.18.2.9:80"))
        }
        refused(.duplicateBackend("198.18.2.2:80")) { try controller.addBackend(vip, Backend(parsing: "198.18.2.2:80,weight=5")) }
        refused(.backendIsVIP("198.18.0.10:80")) { try controller.addBackend(vip, Backend(parsing: "198.18.0.10:80")) }
        refused(.serviceExists("198.18.0.12:80 (twice in the input)")) {
            try controller.addServices([spec("198.18.0.12:80", ["198.18.2.2:80"]), spec("198.18.0.12:80", ["198.18.2.3:80"])])
        }
        refused(.serviceExists("198.18.0.10:80")) {
            try controller.addServices([spec("198.18.0.12:80", ["198.18.2.2:80"]), spec("198.18.0.10:80", ["198.18.2.3:80"])])
        }
    }

    func testNoBackendIsTheVIPOfAnyService() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:80"]))
        try controller.addService(spec("198.18.0.11:80", ["198.18.2.3:80"]))
        let before = snapshot()
        func refused(_ expected: BalancerError, _ body: () throws -> Void, line: UInt = #line) {
            XCTAssertThrowsError(try body(), line: line) { XCTAssertEqual($0 as? BalancerError, expected, line: line) }
            XCTAssertEqual(snapshot(), before, "nothing changed", line: line)
        }
        refused(.backendIsAVIP("198.18.0.10:80")) { try controller.addService(spec("198.18.0.12:80", ["198.18.0.10:80"])) }
        refused(.backendIsAVIP("198.18.0.10:80")) {
            try controller.addBackend(endpoint("198.18.0.11:80"), Backend(parsing: "198.18.0.10:80"))
        }
        refused(.backendIsAVIP("198.18.0.13:80")) {
            try controller.addServices([spec("198.18.0.12:80", ["198.18.0.13:80"]), spec("198.18.0.13:80", ["198.18.2.3:80"])])
        }
        refused(.vipIsABackend("198.18.2.2:80")) { try controller.addService(spec("198.18.2.2:80", ["198.18.2.3:8080"])) }
        XCTAssertNoThrow(try controller.addService(spec("198.18.0.12:80", ["198.18.0.10:8080"])), "the VIP's address on another port")
    }

    func testBackendsUpToTheLimitThenNoMore() throws {
        let vip = try endpoint("198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", (0..<255).map { "198.18.2.2:\(1000 + $0)" }))
        try controller.addBackend(vip, Backend(parsing: "198.18.2.3:80"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.count, 256)
        XCTAssertThrowsError(try controller.addBackend(vip, Backend(parsing: "198.18.2.3:81"))) {
            XCTAssertEqual($0 as? BalancerError, .tooManyBackends(257, limit: 256))
        }
    }

    func testBackendDeleteMovesTheLastIntoTheGap() throws {
        let vip = try endpoint("198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:1", "198.18.2.2:2", "198.18.2.2:3"]))
        try controller.deleteBackend(vip, try endpoint("198.18.2.2:1"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.map(\.endpoint.port), [3, 2])
        XCTAssertEqual(backends.keys().sorted(), [0, 1])
        try controller.addBackend(vip, try Backend(parsing: "198.18.2.2:4"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.map(\.endpoint.port), [3, 2, 4])
    }

    func testDeletingTheLastBackendLeavesAServiceThatRefuses() throws {
        let vip = try endpoint("198.18.0.10:80")
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:80"]))
        try controller.deleteBackend(vip, endpoint("198.18.2.2:80"))
        XCTAssertEqual(services.lookup(Controller.key(vip))?.backend_count, 0)
        XCTAssertEqual(backends.count, 0)
        XCTAssertEqual(controller.service(vip)?.spec.backends, [])
        try controller.addBackend(vip, Backend(parsing: "198.18.2.3:80"))
        XCTAssertEqual(controller.service(vip)?.spec.backends.count, 1)
    }

    func testTheServiceTableFillsUp() throws {
        let tables = ServiceTables.inMemory()
        let controller = Controller(tables)
        let specs = try (0..<Int(PPCTL_MAX_SERVICES)).map { i in
            try spec("198.18.\(i / 250).\(1 + i % 250):80", ["198.18.200.2:80"])
        }
        try controller.addServices(specs)
        XCTAssertEqual(controller.services().count, Int(PPCTL_MAX_SERVICES))
        XCTAssertThrowsError(try Controller(tables).addService(spec("198.19.0.1:80", ["198.18.200.2:80"]))) {
            XCTAssertEqual($0 as? BalancerError, .tooManyServices(limit: Int(PPCTL_MAX_SERVICES)))
        }
    }

    // MARK: - Rollback

    /// Makes the nth write (update or delete) to each map fail in turn, for every n
    /// the change reaches, and checks the maps are exactly as before each time.
    /// When the change gets through, `restore` (run with nothing failing) must put
    /// the maps back as they were for the next round.
    func assertEveryFailureRollsBack(
        _ name: String, line: UInt = #line, change: () throws -> Void,
        restore: () throws -> Void
    ) throws {
        let before = snapshot()
        let failers: [(String, (Int?) -> Void)] = [
            ("services update", { self.services.failUpdate = $0 }), ("services delete", { self.services.failDelete = $0 }),
            ("maglev install", { self.maglev.failInstall = $0 }),
            ("backends update", { self.backends.failUpdate = $0 }), ("backends delete", { self.backends.failDelete = $0 }),
            ("tlvs update", { self.tlvs.failUpdate = $0 })
        ]
        var failures = 0
        for (what, arm) in failers {
            for n in 0..<300 {
                arm(n)
                let failed = (try? change()) == nil
                arm(nil)
                if !failed {
                    try restore()
                    XCTAssertTrue(snapshot() == before, "\(name): restore did not restore", line: line)
                    break
                }
                failures += 1
                XCTAssertTrue(snapshot() == before, "\(name): failing \(what) #\(n) left the maps changed", line: line)
            }
        }
        XCTAssertGreaterThanOrEqual(failures, 3, "\(name): the failures reached the change", line: line)
    }

    func testFailedAddRollsBack() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080"]))
        try assertEveryFailureRollsBack(
            "add",
            change: {
                try controller.addService(spec("198.18.0.11:80", ["198.18.2.2:1", "198.18.2.2:2"]))
            },
            restore: {
                try controller.deleteService(endpoint("198.18.0.11:80"))
            })
    }

    func testFailedBulkAddRollsBack() throws {
        try controller.addService(spec("198.18.0.10:80", ["198.18.2.2:8080"]))
        try assertEveryFailureRollsBack(
            "apply",
            change: {
                try controller.addServices([spec("198.18.0.11:80", ["198.18.2.2:1"]), spec("198.18.0.12:80", ["198.18.2.2:1"])])
            },
            restore: {
                try controller.deleteService(endpoint("198.18.0.11:80"))
                try controller.deleteService(endpoint("198.18.0.12:80"))
            })
    }

    func testFailedDeleteRollsBack() throws {
        let three = try spec("198.18.0.10:80", ["198.18.2.2:1", "198.18.2.2:2", "198.18.2.2:3"])
        try controller.addService(three)
        try assertEveryFailureRollsBack(
            "delete",
            change: {
                try controller.deleteService(endpoint("198.18.0.10:80"))
            },
            restore: {
                try controller.addService(three)
            })
    }

    func testFailedBackendChangesRollBack() throws {
        let vip = try endpoint("198.18.0.10:80")
        let three = try spec("198.18.0.10:80", ["198.18.2.2:1", "198.18.2.2:2", "198.18.2.2:3"])
        try controller.addService(three)
        try assertEveryFailureRollsBack(
            "backend delete",
            change: {
                try controller.deleteBackend(vip, endpoint("198.18.2.2:1"))
            },
            restore: {
                try controller.deleteService(vip)
                try controller.addService(three)
            })
        try assertEveryFailureRollsBack(
            "backend add",
            change: {
                try controller.addBackend(vip, Backend(parsing: "198.18.2.2:4"))
            },
            restore: {
                try controller.deleteBackend(vip, endpoint("198.18.2.2:4"))
            })
    }
}
