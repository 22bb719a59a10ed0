import XCTest

/// ppctl as a new user meets it: bad input gets a one-line error, a non-zero exit,
/// and leaves the maps exactly as they were.
final class ControlPlaneTests: XCTestCase {
    var lab: Lab!

    override func setUpWithError() throws {
        lab = try Lab()
    }

    override func tearDown() {
        lab?.close()
        lab = nil
    }

    /// Everything the control plane wrote, as text.
    func snapshot() throws -> String {
        let list = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        let pins = lab.pinRoot + "/" + lab.balancer
        let backends = try lab.run(["/usr/sbin/bpftool", "map", "dump", "pinned", pins + "/ppctl_backends"]).stdout
        let services = try lab.run(["/usr/sbin/bpftool", "map", "dump", "pinned", pins + "/ppctl_services"]).stdout
        return list + backends + services
    }

    func testCommandsBeforeAttachSayWhatToDo() throws {
        let r = try lab.ppctl(["service", "list"], check: false)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not attached"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
    }

    func testUnknownInterfaceIsRefused() throws {
        let r = try lab.ppctl(["attach", "--iface", "nope0"], check: false)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("no interface named 'nope0'"), r.stderr)
    }

    func testBadInputIsRefusedAndLeavesTheMapsUnchanged() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--proxyv2", "--backend", "198.18.2.2:8080"])
        try lab.ppctl(["service", "add", "[2001:2::10]:80", "--proxy", "v2", "--tlv", "0xE5=tenant-42",
                       "--backend", "[2001:2:0:2::2]:8080"])
        let before = try snapshot()
        let cases: [[String]] = [
            ["service", "add"],                                                            // missing VIP
            ["service", "add", "198.18.0.11:80"],                                          // missing backend
            ["service", "add", "198.18.0.11", "--backend", "198.18.2.2:80"],               // no port
            ["service", "add", "198.18.0.11:0", "--backend", "198.18.2.2:80"],             // port 0
            ["service", "add", "198.18.0.11:65536", "--backend", "198.18.2.2:80"],         // port too big
            ["service", "add", "198.18.0.256:80", "--backend", "198.18.2.2:80"],           // bad address
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=0"],   // weight 0
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=x"],   // weight text
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,color=red"],  // unknown option
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80", "--backend", "198.18.2.2:80"], // duplicate
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.0.11:80"],           // backend is VIP
            ["service", "add", "198.18.0.11:80", "--backend", "[2001:2::2]:80"],           // mixed families
            ["service", "add", "224.0.0.1:80", "--backend", "198.18.2.2:80"],              // multicast VIP
            ["service", "add", "198.18.0.11:80", "--backend", "127.0.0.1:80"],             // loopback backend
            ["service", "add", "198.18.0.11:80", "--proxy", "v3", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxy", "v1", "--proxyv2", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--tlv", "0xE5=x", "--backend", "198.18.2.2:80"],  // TLV without v2
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--tlv", "0x01=x", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--tlv", "0xE5=hex:zz", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--snat", "nope", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.10:80", "--backend", "198.18.2.3:80"],            // exists
            ["service", "delete", "198.18.0.99:80"],                                       // unknown
            ["service", "delete", "banana"],
            ["backend", "add", "198.18.0.99:80", "198.18.2.3:80"],                         // unknown service
            ["backend", "add", "198.18.0.10:80", "198.18.2.2:8080"],                       // duplicate backend
            ["backend", "delete", "198.18.0.10:80", "198.18.2.9:80"],                      // unknown backend
            ["backend", "add", "198.18.0.10:80"],                                          // missing backend
            ["attach"],                                                                    // no interface
            ["attach", "--iface", "l0", "--iface", "l0"],                                  // duplicate interface
            ["attach", "--iface", "l0", "--max-conns", "1"],                               // out of range
            ["detach", "--iface", "nope0"],                                                // not attached
            ["conntrack", "list", "-o", "yaml"],
            ["frobnicate"],
        ]
        var rows = ["| command | exit | error |", "| --- | --- | --- |"]
        for args in cases {
            let r = try lab.ppctl(args, check: false)
            XCTAssertNotEqual(r.status, 0, "ppctl \(args.joined(separator: " ")) must fail")
            let firstLine = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
            XCTAssertTrue(firstLine.lowercased().hasPrefix("error"), "ppctl \(args.joined(separator: " ")): \(r.stderr)")
            XCTAssertEqual(try snapshot(), before, "ppctl \(args.joined(separator: " ")) changed the maps")
            rows.append("| `ppctl \(args.joined(separator: " "))` | \(r.status) | \(firstLine.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        print(rows.joined(separator: "\n"))
    }

    func testNonRootUserCanNeitherReadNorChangeServices() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let before = try snapshot()
        for args in [["service", "list"], ["service", "add", "198.18.0.12:80", "--backend", "198.18.2.2:1"]] {
            let r = try lab.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Lab.ppctlPath] + args,
                                check: false)
            XCTAssertEqual(r.status, 77, r.stderr)
        }
        let pins = lab.pinRoot + "/" + lab.balancer
        let dump = try lab.run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                "/usr/sbin/bpftool", "map", "dump", "pinned", pins + "/ppctl_services"], check: false)
        XCTAssertNotEqual(dump.status, 0, "a non-root user cannot open the pinned maps")
        var st = stat()
        XCTAssertEqual(stat(pins, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        XCTAssertEqual(try snapshot(), before)
    }

    func testServiceListRoundTripsThroughJSON() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--proxy", "v2", "--unique-id", "--crc32c",
                       "--aws-vpce-id", "vpce-0123", "--backend", "198.18.2.2:8080", "--backend", "198.18.2.3:8080,weight=3"])
        try lab.ppctl(["backend", "add", "198.18.0.10:80", "198.18.2.3:9090"])
        try lab.ppctl(["backend", "delete", "198.18.0.10:80", "198.18.2.2:8080"])
        let json = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        XCTAssertEqual(list.count, 1)
        let service = list[0]
        XCTAssertEqual(service["vip"] as? String, "198.18.0.10:80")
        XCTAssertEqual(service["proxy"] as? String, "v2")
        XCTAssertEqual(service["uniqueID"] as? Bool, true)
        XCTAssertEqual(service["crc32c"] as? Bool, true)
        let backends = (service["backends"] as! [[String: Any]]).map { "\($0["address"]!):\($0["port"]!),\($0["weight"]!)" }
        XCTAssertEqual(Set(backends), ["198.18.2.3:8080,3", "198.18.2.3:9090,1"])
        XCTAssertEqual((service["tlvs"] as! [[String: Any]]).first?["name"] as? String, "AWS")
    }

    func testPpctlUnderIPNetnsExecKeepsItsStateBetweenCommands() throws {
        // `ip netns exec` gives each command a private /sys: ppctl must still find the
        // pins of the previous command (it reaches the host's bpffs) under the
        // namespace's own instance.
        try lab.exec(lab.balancer, [Lab.ppctlPath, "attach", "--iface", "l0", "--iface", "l1"])
        try lab.exec(lab.balancer, [Lab.ppctlPath, "service", "add", "198.18.0.10:80", "--proxyv2",
                                    "--backend", "198.18.2.2:8080"])
        let viaExec = try lab.exec(lab.balancer, [Lab.ppctlPath, "service", "list", "-o", "json"]).stdout
        XCTAssertTrue(viaExec.contains("198.18.0.10:80"), viaExec)
        let viaFlag = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        XCTAssertEqual(viaExec, viaFlag, "`ip netns exec NS ppctl` and `ppctl --netns NS` see the same instance")
    }

    func testServiceApplyIsAllOrNone() throws {
        try lab.attach()
        let file = NSTemporaryDirectory() + "ppctl-apply-\(getpid()).txt"
        defer { unlink(file) }
        try "198.18.0.20:80 --proxyv2 --backend 198.18.2.2:8080\n198.18.0.21:80 --backend 198.18.2.2:999999\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let bad = try lab.ppctl(["service", "apply", file], check: false)
        XCTAssertEqual(bad.status, 64)
        XCTAssertTrue(bad.stderr.contains("line 2"), bad.stderr)
        XCTAssertEqual(try lab.ppctl(["service", "list", "-o", "json"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines), "[\n\n]")
        let lines = (0..<300).map { "198.18.0.\(20 + $0 / 100):\(1000 + $0) --proxyv2 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080" }
        try lines.joined(separator: "\n").write(toFile: file, atomically: true, encoding: .utf8)
        try lab.ppctl(["service", "apply", file])
        let json = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [Any]).count, 300)
    }

    func testTwoPpctlProcessesAtOnceDoNotCorruptState() throws {
        try lab.attach()
        let workers = (0..<4).map { w in
            Background { () throws -> Void in
                for i in 0..<10 {
                    try self.lab.ppctl(["service", "add", "198.18.0.\(10 + w):\(1000 + i)", "--backend", "198.18.2.2:80"])
                }
            }
        }
        for w in workers { try w.wait(timeout: 120) }
        let json = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        let list = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
        XCTAssertEqual(list.count, 40)
    }
}
