import CLibbpf
import Datapath
import DatapathABI
import XCTest

/// Upgrades across a layout change: the maps a previous build pinned under other
/// names (as a changed layout renames them, `ppctl_conntrack_v2`) are migrated by
/// `Loader.attach`, services, backends and open connections included.
final class MigrationTests: XCTestCase {
    var lab: Lab!

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    func testAttachMigratesRenamedMapsWithServicesAndOpenConnections() throws {
        try lab.ppctl(["service", "add", "\(Lab.vip):81", "--backend", "\(Lab.backendAddress):8081"])
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8081)
        let accepted = Background { try server.accept() }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 81)
        let backend = try accepted.wait()
        try client.write("before")
        XCTAssertEqual(try backend.readExactly(6), Array("before".utf8))

        // What a previous layout left: these maps under their old names.
        let dir = lab.instanceDirectory
        let renamed: [Maps.Name] = [.services, .backends, .conntrack]
        for name in renamed {
            XCTAssertEqual(rename(dir + "/" + name.rawValue, dir + "/" + name.rawValue + "_v0"), 0, name.rawValue)
        }
        let migrations = renamed.map { name in Migration(from: name.rawValue + "_v0", to: name) { ($0, $1) } }
        let instance = Instance(netns: lab.balancer, pinRoot: lab.pinRoot)
        var attached: [String] = []
        try FaultInjector.inNamespace(lab.balancer) {
            // No interface named: a migration moves every recorded one.
            attached = try Loader.attach(
                instance: instance, interfaces: [], maxConnections: nil,
                migrations: migrations
            ).map(\.name)
        }
        XCTAssertEqual(attached.sorted(), ["l0", "l1"])
        for name in renamed {
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + name.rawValue + "_v0"), "old pin removed")
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + name.rawValue), name.rawValue)
        }

        // The open connection goes on through the new maps, both ways...
        try client.write("after")
        XCTAssertEqual(try backend.readExactly(5), Array("after".utf8))
        try backend.write("reply")
        XCTAssertEqual(try client.readExactly(5), Array("reply".utf8))
        // ...and a new one finds the service.
        let second = Background { try server.accept() }
        let client2 = try TCP.connect(lab, from: lab.client, to: Lab.vip, 81)
        let backend2 = try second.wait()
        try client2.write("new")
        XCTAssertEqual(try backend2.readExactly(3), Array("new".utf8))
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("\(Lab.vip):81"))
    }

    /// ABI 1 to 2: `ppctl_stats` (20 counters per CPU) became `ppctl_stats_v2` (25, the
    /// named drop and pass reasons appended). `ppctl attach` of this build over an
    /// instance an ABI 1 build left keeps every counter and starts the new ones at 0.
    func testAttachMigratesTheABI1StatsMapKeepingItsCounters() throws {
        let dir = lab.instanceDirectory, old = dir + "/ppctl_stats"
        try lab.run([
            "/usr/sbin/bpftool", "map", "create", old, "type", "percpu_array", "key", "4", "value", "160",
            "entries", "1", "name", "ppctl_stats"
        ])
        // packets_to_backend (the first counter) 7 and fwd_errors (the 16th) 3, on every CPU.
        var value = [String](repeating: "0", count: 160)
        value[0] = "7"
        value[15 * 8] = "3"
        try lab.run(["/usr/sbin/bpftool", "map", "update", "pinned", old, "key", "0", "0", "0", "0", "value"] + value)

        try lab.attach()
        XCTAssertFalse(FileManager.default.fileExists(atPath: old), "the ABI 1 pin is gone")
        let stats = try lab.counters()
        let shown = "\(stats)"
        let cpus = UInt64(libbpf_num_possible_cpus())
        XCTAssertEqual(stats["packets_to_backend"], 7 * cpus, shown)
        XCTAssertEqual(stats["fwd_errors"], 3 * cpus, shown)
        XCTAssertEqual(stats["dropped_no_route"], 0, shown)
        XCTAssertEqual(stats["passed_local_untracked"], 0, shown)
    }

    /// ABI 2 to 3: the 256-slot `ppctl_rings` gave way to per-service Maglev tables
    /// (`ppctl_maglev`) and `ppctl_config` (40 bytes) became `ppctl_config_v3` (48,
    /// hash_seed appended). `ppctl attach` over an instance an ABI 2 build left keeps
    /// its settings, services, backends and open connections, and rebuilds every
    /// table before the new programs run, so new connections find their backends.
    func testAttachOverABI2PinsRebuildsTheMaglevTablesAndKeepsConnections() throws {
        try lab.ppctl(["service", "add", "\(Lab.vip):81", "--backend", "\(Lab.backendAddress):8081"])
        let server = try TCP.listen(lab, in: lab.backend, on: "0.0.0.0", 8081)
        let accepted = Background { try server.accept() }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 81)
        let backend = try accepted.wait()
        try client.write("before")
        XCTAssertEqual(try backend.readExactly(6), Array("before".utf8))

        // What an ABI 2 build pins: its config (40 bytes, abi_version 2, one setting
        // changed to recognise it) and its rings; none of the ABI 3 maps. The
        // running programs keep the unpinned ones alive.
        let dir = lab.instanceDirectory
        let maps = try Maps(Instance(netns: lab.balancer, pinRoot: lab.pinRoot))
        var current = try XCTUnwrap(maps.config.lookup(0))
        current.timeout_established = 1234
        current.abi_version = 2
        let old = withUnsafeBytes(of: current) { Array($0.prefix(40)) }
        try lab.run([
            "/usr/sbin/bpftool", "map", "create", dir + "/ppctl_config", "type", "array", "key", "4", "value", "40",
            "entries", "1", "name", "ppctl_config"
        ])
        try lab.run(
            ["/usr/sbin/bpftool", "map", "update", "pinned", dir + "/ppctl_config", "key", "0", "0", "0", "0", "value"]
                + old.map(String.init))
        try lab.run([
            "/usr/sbin/bpftool", "map", "create", dir + "/ppctl_rings", "type", "array", "key", "4", "value", "1024",
            "entries", "16384", "name", "ppctl_rings"
        ])
        for name in [Maps.Name.config, .maglev] { XCTAssertEqual(unlink(dir + "/" + name.rawValue), 0, name.rawValue) }

        try lab.attach(["--hash-seed", "77"])
        for gone in ["ppctl_config", "ppctl_rings"] {
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + gone), "\(gone): the ABI 2 pin is gone")
        }
        let after = try Maps(Instance(netns: lab.balancer, pinRoot: lab.pinRoot))
        let config = try XCTUnwrap(after.config.lookup(0))
        XCTAssertEqual(config.timeout_established, 1234, "settings kept")
        XCTAssertEqual(config.abi_version, UInt32(PPCTL_ABI_VERSION))
        XCTAssertEqual(config.hash_seed, 77)
        XCTAssertEqual(after.maglev.size(0), 1009, "the table was rebuilt from the service")

        // The open connection goes on, both ways; a new one gets the backend.
        try client.write("after")
        XCTAssertEqual(try backend.readExactly(5), Array("after".utf8))
        try backend.write("reply")
        XCTAssertEqual(try client.readExactly(5), Array("reply".utf8))
        let second = Background { try server.accept() }
        let client2 = try TCP.connect(lab, from: lab.client, to: Lab.vip, 81)
        let backend2 = try second.wait()
        try client2.write("new")
        XCTAssertEqual(try backend2.readExactly(3), Array("new".utf8))
    }
}
