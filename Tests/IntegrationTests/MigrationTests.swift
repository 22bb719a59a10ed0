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
        let renamed: [Maps.Name] = [.services, .backends, .rings, .conntrack]
        for name in renamed {
            XCTAssertEqual(rename(dir + "/" + name.rawValue, dir + "/" + name.rawValue + "_v0"), 0, name.rawValue)
        }
        let migrations = renamed.map { name in Migration(from: name.rawValue + "_v0", to: name) { ($0, $1) } }
        let instance = Instance(netns: lab.balancer, pinRoot: lab.pinRoot)
        var attached: [String] = []
        try FaultInjector.inNamespace(lab.balancer) {
            // No interface named: a migration moves every recorded one.
            attached = try Loader.attach(instance: instance, interfaces: [], maxConnections: nil,
                                         migrations: migrations).map(\.name)
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
}
