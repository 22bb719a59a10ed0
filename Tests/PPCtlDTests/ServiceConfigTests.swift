import Balancer
import ProxyProtocol
import XCTest

@testable import ppctld

/// A service's keys in ppctld's file as `service add` would take them.
final class ServiceConfigTests: XCTestCase {
    func parse(_ service: String) throws(ConfigError) -> DaemonConfig {
        try ConfigParser.parse("attach: {interfaces: [l0]}\nservices:\n  - " + service + "\n", file: "f.yaml")
    }

    func testTableSizeKeyFixesTheMaglevTableSize() throws {
        let fixed = try parse("{name: web, vip: 198.18.0.10:80, tableSize: 65537, backends: [{address: 198.18.2.2:8080}]}")
        XCTAssertEqual(fixed.services.first?.spec.tableSize, 65537)
        XCTAssertEqual(fixed.services.first?.spec.maglevSize, 65537)
        let rule = try parse("{name: web, vip: 198.18.0.10:80, backends: [{address: 198.18.2.2:8080}]}")
        XCTAssertNil(rule.services.first?.spec.tableSize)
        XCTAssertEqual(rule.services.first?.spec.maglevSize, Maglev.tableSize(backends: 1))
    }

    func testATableSizeThatIsNotAPrimeIsRefusedAtItsLine() {
        do {
            _ = try parse("{name: web, vip: 198.18.0.10:80, tableSize: 65536, backends: [{address: 198.18.2.2:8080}]}")
            XCTFail("65536 is not a prime")
        } catch {
            XCTAssertEqual(error.issues.count, 1)
            XCTAssertTrue(error.issues.first?.description.hasPrefix("f.yaml:3: services[0]:") == true, "\(error.issues)")
            XCTAssertTrue(error.issues.first?.description.contains("65536") == true, "\(error.issues)")
        }
    }
}
