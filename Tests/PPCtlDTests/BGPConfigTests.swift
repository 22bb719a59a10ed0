import Balancer
import ProxyProtocol
import XCTest
@testable import ppctld

/// The `bgp` section of ppctld's file: what it parses to, what it refuses (with
/// file:line and key, as every refusal), and the bird text it becomes.
final class BGPConfigTests: XCTestCase {
    static let head = """
        attach: {interfaces: [f0, b0]}
        services:
          - {name: web, vip: 198.18.0.10:80, backends: [{address: 198.18.4.21:8080}]}
          - {name: web6, vip: "[2001:2::10]:80", backends: [{address: "[2001:2:0:4::21]:8080"}]}

        """

    func parse(_ yaml: String) throws(ConfigError) -> DaemonConfig { try ConfigParser.parse(Self.head + yaml, file: "f.yaml") }

    /// The issues of a refused file, as `f.yaml:LINE: PATH: MESSAGE` lines.
    func refusal(_ yaml: String) -> [String] {
        do {
            _ = try parse(yaml)
            return []
        } catch { return error.issues.map(\.description) }
    }

    // MARK: - Parsing

    func testFullSectionParses() throws {
        let c = try parse(
            """
            bgp:
              localAS: 65001
              routerId: 198.18.3.11
              holdTime: 9
              birdSocket: /run/ppg/bird.ctl
              include: /run/ppg/ppctld-bird.conf
              birdc: /usr/local/sbin/birdc
              bfd: {interval: 100ms, multiplier: 3}
              peers:
                - {address: 198.18.3.1, as: 65000}
                - {address: "2001:2:0:3::1", as: 4200000000}
            """)
        let b = try XCTUnwrap(c.bgp)
        XCTAssertEqual(b.localAS, 65001)
        XCTAssertEqual(b.routerID.description, "198.18.3.11")
        XCTAssertEqual(b.holdTime, 9)
        XCTAssertEqual(b.birdSocket, "/run/ppg/bird.ctl")
        XCTAssertEqual(b.include, "/run/ppg/ppctld-bird.conf")
        XCTAssertEqual(b.birdc, "/usr/local/sbin/birdc")
        XCTAssertEqual(b.bfd, BGPConfig.BFD(enabled: true, interval: 0.1, multiplier: 3), "a bfd mapping turns BFD on")
        XCTAssertEqual(b.peers.map(\.address.description), ["198.18.3.1", "2001:2:0:3::1"])
        XCTAssertEqual(b.peers.map(\.asn), [65000, 4_200_000_000])
        XCTAssertEqual(b.peers.map(\.line), [14, 15])
    }

    func testDefaults() throws {
        let b = try XCTUnwrap(try parse("bgp: {localAS: 65001, routerId: 198.18.3.11, peers: [{address: 198.18.3.1, as: 65000}]}\n").bgp)
        XCTAssertFalse(b.bfd.enabled)
        XCTAssertNil(b.holdTime)
        XCTAssertEqual(b.birdSocket, "/run/bird/bird.ctl")
        XCTAssertEqual(b.include, "/etc/bird/ppctld.conf")
        XCTAssertEqual(b.birdc, "/usr/sbin/birdc")
        XCTAssertNil(try parse("").bgp, "no section, no announcements")
    }

    func testBadSectionsAreRefusedWithLineAndKey() {
        let cases: [(String, [String])] = [
            (
                "bgp: {routerId: 198.18.3.11, peers: [{address: 198.18.3.1, as: 65000}]}\n",
                ["f.yaml:5: bgp.localAS: is missing"]
            ),
            (
                "bgp:\n  localAS: 0\n  routerId: 198.18.3.11\n  peers: [{address: 198.18.3.1, as: 65000}]\n",
                ["f.yaml:6: bgp.localAS: 0 is not an AS number (1...4294967295)"]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 2001:2::1\n  peers: [{address: 198.18.3.1, as: 65000}]\n",
                ["f.yaml:7: bgp.routerId: '2001:2::1' is not an IPv4 address (bird's router id is one)"]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 198.18.3.11\n  peers: []\n",
                ["f.yaml:8: bgp.peers: give at least one peer: {address: IP, as: N}"]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 198.18.3.11\n  peers:\n    - {address: 198.18.3.1, as: 65000}\n    - {address: 198.18.3.1, as: 65002}\n",
                ["f.yaml:10: bgp.peers[1].address: 198.18.3.1 is given twice (first as bgp.peers[0], line 9)"]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 198.18.3.11\n  peers:\n    - {address: 198.18.3.300, as: 65000, password: x}\n",
                [
                    "f.yaml:9: bgp.peers[0].address: '198.18.3.300' is not an IP address",
                    "f.yaml:9: bgp.peers[0].password: unknown key (expected one of: address, as)"
                ]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 198.18.3.11\n  peers: [{address: 198.18.3.1, as: big}]\n  bfd: {interval: 1ms, multiplier: 300}\n",
                [
                    "f.yaml:8: bgp.peers[0].as: expected a whole number, not 'big'",
                    "f.yaml:9: bgp.bfd.interval: '1ms' is not a duration from 10ms to 10s (such as 100ms)",
                    "f.yaml:9: bgp.bfd.multiplier: 300 is not in 1...255"
                ]
            ),
            (
                "bgp:\n  localAS: 65001\n  routerId: 198.18.3.11\n  peers: [{address: 198.18.3.1, as: 65000}]\n  holdTime: 1\n  include: bird/x.conf\n  colour: blue\n",
                [
                    "f.yaml:9: bgp.holdTime: 1 is not in 3...65535",
                    "f.yaml:10: bgp.include: 'bird/x.conf' is not an absolute path (starting with '/', without quotes)",
                    "f.yaml:11: bgp.colour: unknown key (expected one of: localAS, routerId, peers, bfd, holdTime, birdSocket, include, birdc)"
                ]
            )
        ]
        for (yaml, expected) in cases {
            XCTAssertEqual(Set(refusal(yaml)), Set(expected), yaml)
            XCTAssertEqual(refusal(yaml).count, expected.count, yaml)
        }
    }

    // MARK: - The bird text

    func config(bfd: Bool = true) -> BGPConfig {
        BGPConfig(
            localAS: 65001, routerID: IPv4Address("198.18.3.11")!,
            peers: [
                BGPConfig.Peer(address: IPAddress("198.18.3.1")!, asn: 65000),
                BGPConfig.Peer(address: IPAddress("2001:2:0:3::1")!, asn: 65000)
            ],
            bfd: BGPConfig.BFD(enabled: bfd, interval: 0.1, multiplier: 3), holdTime: 9,
            include: "/run/ppg/ppctld-bird.conf")
    }

    func testGeneratedTextAnnouncesTheVIPsToThePeersOfTheirFamily() {
        let vips: Set<IPAddress> = [IPAddress("198.18.0.11")!, IPAddress("2001:2::10")!, IPAddress("198.18.0.10")!]
        XCTAssertEqual(
            BirdConfig.render(config(), announcing: vips, source: "f.yaml"),
            """
            # Written by ppctld from f.yaml; ppctld rewrites it at every change
            # (docs/config.md, "BGP"). bird.conf includes it: include "/run/ppg/ppctld-bird.conf";
            router id 198.18.3.11;

            protocol static ppctl_vips4 {
                ipv4;
                route 198.18.0.10/32 blackhole;
                route 198.18.0.11/32 blackhole;
            }

            protocol static ppctl_vips6 {
                ipv6;
                route 2001:2::10/128 blackhole;
            }

            protocol bfd ppctl_bfd {
            }

            protocol bgp ppctl_peer_198_18_3_1 {
                local as 65001;
                neighbor 198.18.3.1 as 65000;
                hold time 9;
                bfd { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
                ipv4 {
                    import none;
                    export where proto = "ppctl_vips4";
                };
            }

            protocol bgp ppctl_peer_2001_2_0_3__1 {
                local as 65001;
                neighbor 2001:2:0:3::1 as 65000;
                hold time 9;
                bfd { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };
                ipv6 {
                    import none;
                    export where proto = "ppctl_vips6";
                };
            }

            """)
    }

    func testNothingToAnnounceKeepsTheSessionsAndWithoutBFDThereIsNoBFD() {
        let text = BirdConfig.render(config(bfd: false), announcing: [], source: "f.yaml")
        XCTAssertFalse(text.contains("route "), text)
        XCTAssertFalse(text.contains("bfd"), text)
        XCTAssertTrue(text.contains("protocol bgp ppctl_peer_198_18_3_1 {"), text)
        XCTAssertTrue(text.contains("protocol static ppctl_vips4 {\n    ipv4;\n}"), text)
    }

    /// bird itself accepts the text (`bird -p` parses a configuration and exits),
    /// when bird2 is installed (scripts/test installs it).
    func testBirdParsesTheGeneratedText() throws {
        let bird = "/usr/sbin/bird"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: bird), "bird2 is not installed")
        let dir = NSTemporaryDirectory() + "ppg-\(getpid())-bird-parse"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var c = config()
        c.include = dir + "/ppctld.conf"
        let text = BirdConfig.render(c, announcing: [IPAddress("198.18.0.10")!, IPAddress("2001:2::10")!], source: "f.yaml")
        try text.write(toFile: c.include, atomically: true, encoding: .utf8)
        try "protocol device {}\ninclude \"\(c.include)\";\n".write(toFile: dir + "/bird.conf", atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bird)
        p.arguments = ["-p", "-c", dir + "/bird.conf"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, message + "\n" + text)
    }
}
