import Datapath
import DatapathABI
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

    /// Everything the control plane wrote, as text: the service list and the maps
    /// it writes, byte for byte (of the arrays, the first ids: the ones tests use).
    func snapshot() throws -> String {
        let list = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        let dir = lab.instanceDirectory
        let pin = { (map: Maps.Name) in dir + "/" + map.rawValue }
        // ppctl_maglev: which table (inner map id) each service has; a failed
        // command must leave the very same tables in place.
        let dumps = [Maps.Name.services, .backends, .config, .ifaces, .maglev].map { "map dump pinned \(pin($0))" }
        let lookups = [Maps.Name.serviceTLVs].flatMap { map in (0..<4).map { "map lookup pinned \(pin(map)) key \($0) 0 0 0" } }
        return list + (try lab.bpftool(batch: dumps + lookups))
    }

    /// The ids of the programs on an interface's ingress (`tc filter show`), and
    /// the filter lines.
    func filters(_ dev: String) throws -> (ids: [String], lines: [String]) {
        let shown = try lab.exec(lab.balancer, ["tc", "filter", "show", "dev", dev, "ingress"]).stdout
        let lines = shown.split(separator: "\n").map(String.init).filter { $0.contains(" bpf ") && $0.contains(" handle ") }
        let ids = lines.compactMap { line -> String? in
            let words = line.split(separator: " ")
            return words.firstIndex(of: "id").flatMap { $0 + 1 < words.count ? String(words[$0 + 1]) : nil }
        }
        return (ids, lines)
    }

    func testCommandsBeforeAttachSayWhatToDo() throws {
        let r = try lab.ppctl(["service", "list"], check: false)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("not attached"), r.stderr)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1)
    }

    func testUnknownInterfaceIsRefusedBeforeAnythingIsDone() throws {
        let r = try lab.ppctl(["attach", "--iface", "l0", "--iface", "nope0"], check: false)
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "error: no interface named 'nope0'\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory), "no pins")
        XCTAssertEqual(try filters("l0").ids, [], "no filter on l0")
    }

    func testAttachPutsOneFilterOnEachInterfaceAndAttachAgainUpgradesInPlace() throws {
        let out = try lab.attach().stdout
        XCTAssertTrue(out.contains("attached to l0") && out.contains("attached to l1"), out)
        var first: [String] = []
        for dev in ["l0", "l1"] {
            let f = try filters(dev)
            XCTAssertEqual(f.ids.count, 1, "one filter on \(dev): \(f.lines)")
            XCTAssertTrue(f.lines.first?.contains(String(Loader.programName.prefix(15))) == true, "\(f.lines)")
            XCTAssertTrue(f.lines.first?.contains("handle 0x5050") == true, "\(f.lines)")
            first += f.ids
        }
        XCTAssertEqual(Set(first).count, 1, "the same program on both")
        try lab.ppctl([
            "service", "add", "198.18.0.10:80", "--proxyv2", "--backend", "198.18.2.2:8080,weight=2",
            "--backend", "198.18.2.3:8080"
        ])
        try lab.ppctl(["service", "add", "198.18.0.11:443", "--snat", "198.18.2.1", "--backend", "198.18.2.2:8443"])
        let before = try snapshot()

        try lab.attach()
        XCTAssertEqual(try snapshot(), before, "an upgrade keeps services, config and interfaces")
        for dev in ["l0", "l1"] {
            let f = try filters(dev)
            XCTAssertEqual(f.ids.count, 1, "still one filter on \(dev): \(f.lines)")
            XCTAssertNotEqual(f.ids, [first[0]], "the new program replaced the old one on \(dev)")
        }
    }

    func testMaxConnsSizesTheTableOnceAndIsThenKept() throws {
        try lab.attach(["--max-conns", "1000"])
        func maxEntries() throws -> String {
            let shown = try lab.run(["/usr/sbin/bpftool", "map", "show", "pinned", lab.instanceDirectory + "/ppctl_conntrack"]).stdout
            return shown.components(separatedBy: "max_entries ").dropFirst().first?.split(separator: " ").first.map(String.init) ?? shown
        }
        XCTAssertEqual(try maxEntries(), "2000", "two entries per connection")
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let before = try snapshot()
        let r = try lab.ppctl(["attach", "--iface", "l0", "--iface", "l1", "--max-conns", "5000"], check: false)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.hasPrefix("error: the conntrack table holds 1000 connections, not 5000"), r.stderr)
        XCTAssertEqual(try snapshot(), before)
        try lab.attach()
        XCTAssertEqual(try maxEntries(), "2000", "an upgrade without --max-conns keeps the size")
        XCTAssertEqual(try snapshot(), before)
    }

    func testDetachFromOneInterfaceThenFromEverythingLeavesNothing() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let ids = try filters("l0").ids
        XCTAssertEqual(ids.count, 1)

        XCTAssertEqual(try lab.ppctl(["detach", "--iface", "l0"]).stdout, "detached from l0\n")
        XCTAssertEqual(try filters("l0").ids, [])
        XCTAssertEqual(try filters("l1").ids, ids, "l1 keeps its filter")
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("198.18.0.10:80"), "services stay")
        let ifaces = try lab.dump(.ifaces)
        XCTAssertFalse(ifaces.contains("\"l0\""), ifaces)

        try lab.ppctl(["detach"])
        XCTAssertEqual(try filters("l1").ids, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory), "the pin directory is gone")
        // The program goes when its last reference does (the sweeper's timer holds
        // one until the maps are freed): poll briefly.
        var alive = true
        for _ in 0..<50 where alive {
            alive = try lab.run(["/usr/sbin/bpftool", "prog", "show", "id", ids[0]], check: false).status == 0
            if alive { usleep(100_000) }
        }
        XCTAssertFalse(alive, "program \(ids[0]) is freed after detach")
        let again = try lab.ppctl(["service", "list"], check: false)
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("not attached"), again.stderr)
        XCTAssertEqual(try lab.ppctl(["detach"], check: false).status, 1, "nothing left to detach")
    }

    func testAttachRecordsTheLayoutVersionAndRefusesANewerOne() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let config = try BPFMap<UInt32, ppctl_config>(pinnedAt: lab.instanceDirectory + "/" + Maps.Name.config.rawValue)
        var pinned = try XCTUnwrap(config.lookup(0))
        XCTAssertEqual(pinned.abi_version, UInt32(PPCTL_ABI_VERSION))
        XCTAssertEqual(pinned.timeout_syn, UInt32(PPCTL_DEFAULT_TIMEOUT_SYN))

        // What an older ppctl meets after a newer one attached.
        pinned.abi_version = UInt32(PPCTL_ABI_VERSION) + 1
        try config.update(0, pinned)
        let attach = try lab.attach(check: false)
        XCTAssertEqual(attach.status, 1)
        XCTAssertEqual(
            attach.stderr,
            "error: the pinned maps have layout version \(PPCTL_ABI_VERSION + 1), newer than "
                + "this ppctl's (\(PPCTL_ABI_VERSION)); attach with the newer ppctl, or `ppctl detach` first "
                + "(this drops its services and connections)\n")
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("198.18.0.10:80"), "the services are untouched")
        try lab.ppctl(["detach"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory))
    }

    func testAnIncompatiblePinnedMapIsNamedAndDetachStillCleansUp() throws {
        // What an upgrade that changed a map's layout meets: a pin of another shape.
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let pin = lab.instanceDirectory + "/ppctl_backends"
        unlink(pin)
        try lab.run([
            "/usr/sbin/bpftool", "map", "create", pin, "type", "hash", "key", "4", "value", "8",
            "entries", "16", "name", "ppctl_backends"
        ])
        let attach = try lab.attach(check: false)
        XCTAssertEqual(attach.status, 1)
        XCTAssertTrue(
            attach.stderr.hasPrefix("error: the pinned map ppctl_backends does not match this datapath (value size 8, not "),
            attach.stderr)
        XCTAssertTrue(attach.stderr.contains("`ppctl detach` first"), attach.stderr)
        let list = try lab.ppctl(["service", "list"], check: false)
        XCTAssertEqual(list.status, 1)
        XCTAssertEqual(
            list.stderr,
            "error: the pinned map ppctl_backends does not match this datapath "
                + "(value size 8, not \(MemoryLayout<ppctl_backend>.size)); "
                + "`ppctl detach` first (this drops its services and connections)\n")

        // ppctl_ifaces forgetting l1 does not leave its filter behind either.
        let index = try lab.exec(lab.balancer, ["cat", "/sys/class/net/l1/ifindex"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let key = withUnsafeBytes(of: UInt32(index)!.littleEndian) { $0.map { String($0) } }
        try lab.run(["/usr/sbin/bpftool", "map", "delete", "pinned", lab.instanceDirectory + "/ppctl_ifaces", "key"] + key)
        let detach = try lab.ppctl(["detach"])
        XCTAssertEqual(detach.stderr, "", "libbpf stays quiet")
        XCTAssertTrue(detach.stdout.contains("detached from l0") && detach.stdout.contains("detached from l1"), detach.stdout)
        XCTAssertEqual(try filters("l0").ids + filters("l1").ids, [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory))
    }

    func testStatsAndConntrackAnswerInBothFormats() throws {
        try lab.attach()
        let stats = try lab.counters()
        XCTAssertEqual(stats["live_connections"], 0)
        XCTAssertEqual(stats["connections"], 0)
        XCTAssertEqual(stats.count, 30, "\(stats.keys.sorted())")
        for reason in [
            "dropped_rewrite_error", "dropped_header_error", "dropped_no_route", "dropped_redirect_error",
            "passed_local_untracked", "fwd_errors"
        ] {
            XCTAssertEqual(stats[reason], 0, "\(reason) is shown")
        }
        XCTAssertEqual(stats["local_headers_pushed"], 0, "the socket path's counters are there from the first attach")
        XCTAssertTrue(try lab.ppctl(["stats"]).stdout.hasPrefix("COUNTER"))
        let ct = try JSONSerialization.jsonObject(with: Data(try lab.ppctl(["conntrack", "list", "-o", "json"]).stdout.utf8)) as! [Any]
        XCTAssertEqual(ct.count, 0)
        XCTAssertTrue(try lab.ppctl(["conntrack", "list"]).stdout.hasPrefix("CLIENT"))
        XCTAssertTrue(try lab.ppctl(["conntrack"]).stdout.hasPrefix("CLIENT"), "list is the default")
    }

    /// `header decode -o json` gives the cloud TLVs' typed values beside their hex.
    func testHeaderDecodeShowsTheCloudTLVsTyped() throws {
        let hex = try lab.run([
            Lab.ppctlPath, "header", "encode", "--source", "198.18.1.2:4000",
            "--destination", "198.18.0.10:80", "--aws-vpce-id", "vpce-08d2bf15fac5001c9",
            "--azure-link-id", "305419896", "--gcp-psc-id", "72623859790382856",
            "--tlv", "0xE5=tenant-42", "-o", "hex"
        ]).stdout
        let json = try lab.run([
            Lab.ppctlPath, "header", "decode", "-o", "json",
            hex.trimmingCharacters(in: .whitespacesAndNewlines)
        ]).stdout
        let decoded = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any], json)
        let tlvs = try XCTUnwrap(decoded["tlvs"] as? [[String: Any]], json)
        func tlv(_ type: Int) throws -> [String: Any] { try XCTUnwrap(tlvs.first { $0["type"] as? Int == type }, json) }
        let aws = try tlv(0xEA), azure = try tlv(0xEE), gcp = try tlv(0xE0), custom = try tlv(0xE5)
        XCTAssertEqual(aws["vpcEndpointID"] as? String, "vpce-08d2bf15fac5001c9")
        XCTAssertEqual(aws["hex"] as? String, "01" + "vpce-08d2bf15fac5001c9".utf8.map { String(format: "%02x", $0) }.joined())
        XCTAssertEqual(azure["azureLinkID"] as? Int, 305_419_896)
        XCTAssertEqual(azure["hex"] as? String, "0178563412", "subtype 1, then the id little-endian")
        // Decoded as a UInt64 (JSONSerialization's numbers are Doubles past 2^53).
        struct Typed: Decodable {
            struct TLV: Decodable {
                var type: Int
                var pscConnectionID: UInt64?
            }
            var tlvs: [TLV]
        }
        let typed = try JSONDecoder().decode(Typed.self, from: Data(json.utf8))
        XCTAssertEqual(typed.tlvs.first { $0.type == 0xE0 }?.pscConnectionID, 72_623_859_790_382_856, "every bit of the u64: \(json)")
        XCTAssertNotNil(gcp["pscConnectionID"])
        XCTAssertEqual(gcp["hex"] as? String, "0102030405060708")
        XCTAssertEqual(custom["text"] as? String, "tenant-42")
        for key in ["vpcEndpointID", "azureLinkID", "pscConnectionID"] {
            XCTAssertNil(custom[key], "a custom TLV has no typed value: \(custom)")
        }
        let table = try lab.run([Lab.ppctlPath, "header", "decode", hex.trimmingCharacters(in: .whitespacesAndNewlines)]).stdout
        XCTAssertTrue(table.contains("link id 305419896 (0178563412)"), table)
        XCTAssertTrue(table.contains("PSC connection id 72623859790382856"), table)
    }

    func testEveryCommandHasHelp() throws {
        for path in [
            [], ["attach"], ["detach"], ["service"], ["service", "add"], ["service", "apply"], ["service", "delete"],
            ["service", "list"], ["backend"], ["backend", "add"], ["backend", "delete"], ["conntrack"],
            ["conntrack", "list"], ["stats"], ["header"]
        ] {
            let r = try lab.run([Lab.ppctlPath] + path + ["--help"], check: false)
            XCTAssertEqual(r.status, 0, "\(path)")
            XCTAssertTrue(r.stdout.hasPrefix("OVERVIEW:"), "\(path): \(r.stdout.prefix(80))")
            XCTAssertTrue(r.stdout.contains("USAGE: ppctl \(path.joined(separator: " "))"), "\(path)")
        }
        XCTAssertEqual(try lab.run([Lab.ppctlPath, "--version"]).stdout, "0.1.0\n")
    }

    func testBadInputIsRefusedAndLeavesTheMapsUnchanged() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--proxyv2", "--backend", "198.18.2.2:8080"])
        try lab.ppctl([
            "service", "add", "[2001:2::10]:80", "--proxy", "v2", "--tlv", "0xE5=tenant-42",
            "--backend", "[2001:2:0:2::2]:8080"
        ])
        try lab.ppctl(["service", "add", "198.18.0.12:80", "--backend", "198.18.2.3:8080"])
        let before = try snapshot()
        let cases: [[String]] = [
            ["service", "add"],  // missing VIP
            ["service", "add", "198.18.0.11:80"],  // missing backend
            ["service", "add", "198.18.0.11", "--backend", "198.18.2.2:80"],  // no port
            ["service", "add", "198.18.0.11:0", "--backend", "198.18.2.2:80"],  // port 0
            ["service", "add", "198.18.0.11:65536", "--backend", "198.18.2.2:80"],  // port too big
            ["service", "add", "198.18.0.256:80", "--backend", "198.18.2.2:80"],  // bad address
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=0"],  // weight 0
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=x"],  // weight text
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,color=red"],  // unknown option
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80", "--backend", "198.18.2.2:80"],  // duplicate
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.0.11:80"],  // backend is VIP
            ["service", "add", "198.18.0.11:80", "--backend", "[2001:2::2]:80"],  // mixed families
            ["service", "add", "224.0.0.1:80", "--backend", "198.18.2.2:80"],  // multicast VIP
            ["service", "add", "198.18.0.11:80", "--backend", "127.0.0.1:80"],  // loopback backend
            ["service", "add", "198.18.0.11:80", "--proxy", "v3", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxy", "v1", "--proxyv2", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--tlv", "0xE5=x", "--backend", "198.18.2.2:80"],  // TLV without v2
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--tlv", "0x01=x", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--tlv", "0xE5=hex:zz", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--snat", "nope", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--snat", "255.255.255.255", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--snat", "2001:2::1", "--backend", "198.18.2.2:80"],  // family
            ["service", "add", "198.18.0.11:80", "--backend", "0.0.0.0:80"],  // unspecified
            ["service", "add", "[198.18.0.11]:80", "--backend", "198.18.2.2:80"],  // brackets on IPv4
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=1,weight=2"],
            ["service", "add", "198.18.0.11:80"] + (0...256).flatMap { ["--backend", "198.18.2.2:\(1000 + $0)"] },  // 257
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80", "--azure-link-id", "-1"],
            ["service", "add", "198.18.0.11:80", "--proxy", "v2", "--proxy", "v1", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--proxy", "v2", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--proxyv2", "--proxyv2", "--backend", "198.18.2.2:80"],
            ["service", "add", "198.18.0.11:80", "--backend", "[::ffff:127.0.0.1]:8080"],  // IPv4-mapped
            ["service", "add", "[::ffff:198.18.0.11]:80", "--backend", "[2001:2:0:2::2]:80"],
            ["service", "add", "[2001:2::11]:80", "--snat", "::ffff:198.18.2.1", "--backend", "[2001:2:0:2::2]:80"],
            ["service", "add", "198.18.0.11:80", "--backend", "169.254.1.1:80"],  // link-local
            ["service", "add", "[2001:2::11]:80", "--backend", "[fe80::1]:80"],
            ["service", "add", "198.18.0.11:80", "--snat", "198.18.0.11", "--backend", "198.18.2.2:80"],  // SNAT is the VIP
            ["service", "add", "198.18.0.11:80", "--backend", "198.18.0.10:80"],  // another service's VIP
            ["service", "add", "198.18.2.2:8080", "--backend", "198.18.2.3:80"],  // a backend as VIP
            ["service", "add", "198.18.0.10:80", "--backend", "198.18.2.3:80"],  // exists
            ["service", "delete", "198.18.0.99:80"],  // unknown
            ["service", "delete", "banana"],
            ["service", "delete", "198.18.0.10"],
            ["backend", "add", "198.18.0.99:80", "198.18.2.3:80"],  // unknown service
            ["backend", "add", "198.18.0.10:80", "198.18.2.2:8080"],  // duplicate backend
            ["backend", "delete", "198.18.0.10:80", "198.18.2.9:80"],  // unknown backend
            ["backend", "add", "198.18.0.10:80"],  // missing backend
            ["backend", "add", "198.18.0.12:80", "198.18.0.10:80"],  // another service's VIP
            ["attach"],  // no interface
            ["attach", "--iface", "l0", "--iface", "l0"],  // duplicate interface
            ["attach", "--iface", "l0", "--max-conns", "1"],  // out of range
            ["attach", "--iface", "l0", "--max-conns", "lots"],
            ["attach", "--iface", "l0", "--iface", "l1", "--max-conns", "1000"],  // size is fixed
            ["attach", "--iface", "l0", "--iface", "nope0"],  // unknown interface
            ["detach", "--iface", "l0", "--iface", "l0"],
            ["detach", "--iface", "nope0"],  // not attached
            ["conntrack", "list", "-o", "yaml"],
            ["frobnicate"]
        ]
        var rows = ["| command | exit | error |", "| --- | --- | --- |"]
        for args in cases {
            let r = try lab.ppctl(args, check: false)
            XCTAssertNotEqual(r.status, 0, "ppctl \(args.joined(separator: " ")) must fail")
            let firstLine = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
            XCTAssertTrue(firstLine.lowercased().hasPrefix("error"), "ppctl \(args.joined(separator: " ")): \(r.stderr)")
            XCTAssertEqual(try snapshot(), before, "ppctl \(args.joined(separator: " ")) changed the maps")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            let shown = args.count > 20 ? args.prefix(6) + ["...(257 backends)"] : args[...]
            rows.append(
                "| `ppctl \(shown.joined(separator: " "))` | \(r.status) | \(firstLine.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        print(rows.joined(separator: "\n"))
    }

    func testNonRootUserCanNeitherReadNorChangeServices() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let before = try snapshot()
        for args in [["service", "list"], ["service", "add", "198.18.0.12:80", "--backend", "198.18.2.2:1"]] {
            let r = try lab.run(
                ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", Lab.ppctlPath] + args,
                check: false)
            XCTAssertEqual(r.status, 77, r.stderr)
            XCTAssertEqual(r.stderr, "error: ppctl needs root (CAP_BPF and CAP_NET_ADMIN) for this command\n")
        }
        let pins = lab.instanceDirectory
        let dump = try lab.run(
            [
                "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                "/usr/sbin/bpftool", "map", "dump", "pinned", pins + "/ppctl_services"
            ], check: false)
        XCTAssertNotEqual(dump.status, 0, "a non-root user cannot open the pinned maps")
        var st = stat()
        XCTAssertEqual(stat(pins, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o700)
        for map in Maps.Name.allCases {
            XCTAssertEqual(stat(pins + "/" + map.rawValue, &st), 0, map.rawValue)
            XCTAssertEqual(st.st_mode & 0o777, 0o600, "\(map.rawValue) is mode 0600")
            XCTAssertEqual(st.st_uid, 0)
        }
        XCTAssertEqual(try snapshot(), before)
    }

    func testServiceListRoundTripsThroughJSON() throws {
        try lab.attach()
        try lab.ppctl([
            "service", "add", "198.18.0.10:80", "--proxy", "v2", "--unique-id", "--crc32c",
            "--aws-vpce-id", "vpce-0123", "--backend", "198.18.2.2:8080", "--backend", "198.18.2.3:8080,weight=3"
        ])
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
        try lab.exec(
            lab.balancer,
            [
                Lab.ppctlPath, "service", "add", "198.18.0.10:80", "--proxyv2",
                "--backend", "198.18.2.2:8080"
            ])
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

    func testApplyReadsEachLineAsServiceAddWould() throws {
        // Common forms take apply's quick reader, the others ArgumentParser: the
        // services must come out the same as from `service add`, errors too.
        let lines = [
            "198.18.0.20:80 --proxyv2 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080,weight=3",
            "198.18.0.21:80\t--backend=198.18.2.2:8080   --proxy v1",
            "198.18.0.22:80 --proxy v2 --unique-id --crc32c --tlv 0xE5=hex:0a0b --aws-vpce-id vpce-1 --backend 198.18.2.2:1",
            "--backend 198.18.2.2:2 198.18.0.23:80 --snat 198.18.2.1 --azure-link-id 7 --proxyv2",
            "[2001:2::10]:80 --backend [2001:2:0:2::2]:8080 --gcp-psc-id 9 --proxyv2"
        ]
        try lab.attach()
        let file = NSTemporaryDirectory() + "ppctl-apply-same-\(getpid()).txt"
        defer { unlink(file) }
        try ("# a comment\n\n" + lines.joined(separator: "\n") + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        try lab.ppctl(["service", "apply", file])
        let applied = try lab.ppctl(["service", "list", "-o", "json"]).stdout
        try lab.ppctl(["detach"])
        try lab.attach()
        for line in lines {
            try lab.ppctl(["service", "add"] + line.split(whereSeparator: \.isWhitespace).map(String.init))
        }
        XCTAssertEqual(try lab.ppctl(["service", "list", "-o", "json"]).stdout, applied)

        for bad in [
            "198.18.0.30:80 --backend 198.18.2.2:0", "198.18.0.30:80 --backend=198.18.2.2:0",
            "198.18.0.30:80 --proxy v3 --backend 198.18.2.2:1", "198.18.0.30:80 --proxy=v3 --backend 198.18.2.2:1",
            "198.18.0.30:80 198.18.0.31:80 --backend 198.18.2.2:1", "198.18.0.30:80 --bogus --backend 198.18.2.2:1"
        ] {
            try bad.write(toFile: file, atomically: true, encoding: .utf8)
            let viaApply = try lab.ppctl(["service", "apply", file], check: false)
            let viaAdd = try lab.ppctl(["service", "add"] + bad.split(separator: " ").map(String.init), check: false)
            XCTAssertEqual(viaApply.status, 64, bad)
            let reason = { (text: String) in
                text.replacingOccurrences(of: "line 1: ", with: "").components(separatedBy: " (see").first ?? text
            }
            XCTAssertEqual(reason(viaApply.stderr), reason(viaAdd.stderr), bad)
        }
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

    // MARK: - Hardening (issue 18)

    func testServiceApplyReadsCRLFAndTrailingComments() throws {
        try lab.attach()
        let file = NSTemporaryDirectory() + "ppctl-apply-crlf-\(getpid()).txt"
        defer { unlink(file) }
        try
            ("# services\r\n198.18.0.20:80 --proxyv2 --backend 198.18.2.2:8080 # the first\r\n\r\n"
            + "198.18.0.21:80 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080\t#two\r\n")
            .write(toFile: file, atomically: true, encoding: .utf8)
        XCTAssertEqual(try lab.ppctl(["service", "apply", file]).stdout, "added 2 services\n")
        let list = try lab.ppctl(["service", "list"]).stdout
        XCTAssertTrue(list.contains("198.18.0.20:80") && list.contains("198.18.2.2:8080 198.18.2.3:8080"), list)
    }

    func testServiceApplyRefusesWhatDoesNotBelongAndNamesTheLine() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let before = try snapshot()
        let file = NSTemporaryDirectory() + "ppctl-apply-bad-\(getpid()).txt"
        defer { unlink(file) }
        let many = (0..<5000).map { "198.18.\(100 + $0 / 250).\($0 % 250 + 1):80 --backend 198.18.2.2:8080" }
        let cases: [(shown: String, text: String, error: String)] = [
            (
                "198.18.0.20:80 --backend 198.18.2.2:8080 --netns other", "198.18.0.20:80 --backend 198.18.2.2:8080 --netns other\n",
                "error: line 1: --netns does not belong in a line; give it to `ppctl service apply` itself"
            ),
            (
                "198.18.0.20:80 --proxyv2\\0 --backend 198.18.2.2:8080", "198.18.0.20:80 --proxyv2\0 --backend 198.18.2.2:8080\n",
                "error: line 1: the line holds a NUL byte (\\0)"
            ),
            (
                "198.18.202.1:1000 --backend 198.18.2.2:80 / [::ffff:198.18.202.1]:1000 --backend [2001:2:0:2::2]:80",
                "198.18.202.1:1000 --backend 198.18.2.2:80\n[::ffff:198.18.202.1]:1000 --backend [2001:2:0:2::2]:80\n",
                "error: line 2: address ::ffff:198.18.202.1 is IPv4-mapped: write the IPv4 address 198.18.202.1"
            ),
            (
                "198.18.0.20:80 --proxy v2 --proxy v1 --backend 198.18.2.2:8080",
                "198.18.0.20:80 --proxy v2 --proxy v1 --backend 198.18.2.2:8080\n",
                "error: line 1: give the PROXY version once, not --proxy v2 and --proxy v1"
            ),
            (
                "(5000 services, then the third again)", (many + [many[2]]).joined(separator: "\n"),
                "error: line 5001: service 198.18.100.3:80 is given twice (first on line 3)"
            ),
            (
                "198.18.0.20:80 --backend 198.18.2.2:8080 / 198.18.0.10:80 --backend 198.18.2.3:8080",
                "198.18.0.20:80 --backend 198.18.2.2:8080\n198.18.0.10:80 --backend 198.18.2.3:8080\n",
                "error: line 2: service 198.18.0.10:80 already exists"
            )
        ]
        var rows: [String] = []
        for c in cases {
            try c.text.write(toFile: file, atomically: true, encoding: .utf8)
            let r = try lab.ppctl(["service", "apply", file], check: false)
            XCTAssertEqual(r.status, 64, c.shown)
            XCTAssertTrue(r.stderr.hasPrefix(c.error), "\(c.shown): \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, "one line: \(r.stderr)")
            XCTAssertEqual(try snapshot(), before, "\(c.shown) changed the maps")
            let firstLine = r.stderr.split(separator: "\n").first.map(String.init) ?? ""
            rows.append(
                "| `ppctl service apply FILE` with `\(c.shown)` | \(r.status) | \(firstLine.replacingOccurrences(of: "|", with: "\\|")) |")
        }
        print(rows.joined(separator: "\n"))
    }

    func testAPinRootMadeByAnotherUserIsRefusedAndNothingIsPinned() throws {
        let nobody = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        try lab.run(nobody + ["mkdir", "-m", "0777", lab.pinRoot, lab.instanceDirectory])
        let r = try lab.attach(check: false)
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertEqual(
            r.stderr,
            "error: refusing to pin under \(lab.pinRoot): it is owned by uid 65534, not root; remove it "
                + "(ppctl creates its pin directories itself, owned by root, mode 0700)\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: lab.instanceDirectory), [], "nothing pinned")
        XCTAssertEqual(try filters("l0").ids, [], "no filter on l0")

        // A root-owned pin root others can write to is refused as well.
        try lab.run(["/bin/rm", "-r", lab.pinRoot])
        try lab.run(["/bin/mkdir", "-m", "0777", lab.pinRoot])
        let writable = try lab.attach(check: false)
        XCTAssertEqual(writable.status, 77, writable.stderr)
        XCTAssertTrue(writable.stderr.contains("others can write to it (mode 777)"), writable.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: lab.pinRoot), [], "nothing created")

        // Made by ppctl itself: root's, mode 0700, and nobody cannot touch the pins.
        try lab.run(["/bin/rmdir", lab.pinRoot])
        try lab.attach()
        for dir in [lab.pinRoot, lab.instanceDirectory] {
            var st = stat()
            XCTAssertEqual(lstat(dir, &st), 0)
            XCTAssertEqual(st.st_uid, 0, dir)
            XCTAssertEqual(st.st_mode & 0o7777, 0o700, dir)
        }
        let pin = lab.instanceDirectory + "/ppctl_services"
        XCTAssertNotEqual(try lab.run(nobody + ["/bin/mv", pin, "/sys/fs/bpf/ppctl-test-\(getpid())-moved"], check: false).status, 0)
        XCTAssertNotEqual(try lab.run(nobody + ["/bin/rm", "-f", pin], check: false).status, 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: pin))

        // Pins adopted before this check (an older ppctl) are refused by every command.
        XCTAssertEqual(chown(lab.instanceDirectory, 65534, 65534), 0)
        defer { chown(lab.instanceDirectory, 0, 0) }
        let list = try lab.ppctl(["service", "list"], check: false)
        XCTAssertEqual(list.status, 77, list.stderr)
        XCTAssertTrue(list.stderr.hasPrefix("error: refusing to pin under \(lab.instanceDirectory): it is owned by uid 65534"), list.stderr)
    }

    func testASymlinkedPinRootIsRefused() throws {
        let target = lab.pinRoot + "-target"
        try lab.run(["/bin/mkdir", "-m", "0700", target])
        defer { rmdir(target) }
        XCTAssertEqual(symlink(target, lab.pinRoot), 0)
        let r = try lab.attach(check: false)
        XCTAssertEqual(r.status, 77, r.stderr)
        XCTAssertTrue(r.stderr.hasPrefix("error: refusing to pin under \(lab.pinRoot): it is a symbolic link; "), r.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: target), [], "nothing pinned through the link")
    }

    func testAPinRootOffBPFFSLeavesNothingBehind() throws {
        let outside = "/tmp/ppctl-test-\(getpid())-notbpffs"
        let root = outside + "/pins"
        defer { unlink(Instance(netns: lab.balancer, pinRoot: root).lockPath) }
        let r = try lab.run(
            [Lab.ppctlPath, "--netns", lab.balancer, "attach", "--iface", "l0"], env: ["PPCTL_PIN_ROOT": root],
            check: false)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stderr, "error: the pin root \(root) is not on a bpffs (choose a PPCTL_PIN_ROOT under /sys/fs/bpf)\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: outside), "no directory left behind")
        XCTAssertEqual(try filters("l0").ids, [], "no filter on l0")
    }

    func testRootWithoutCapabilitiesExits77AndChangesNothing() throws {
        try lab.attach()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"])
        let before = try snapshot()
        let withoutCaps = [
            "/usr/bin/setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-net_admin,-sys_admin",
            Lab.ppctlPath, "--netns", lab.balancer
        ]
        for args in [
            ["service", "list"], ["service", "add", "198.18.0.12:80", "--backend", "198.18.2.2:1"],
            ["attach", "--iface", "l0"], ["detach"]
        ] {
            let r = try lab.run(withoutCaps + args, check: false)
            XCTAssertEqual(r.status, 77, "\(args): \(r.stderr)")
            XCTAssertEqual(
                r.stderr,
                "error: ppctl needs CAP_BPF and CAP_NET_ADMIN, and CAP_SYS_ADMIN for --netns, for this command; "
                    + "it runs without CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN\n")
        }
        XCTAssertEqual(try snapshot(), before)
    }

    func testCommandsRefusedAsNotAttachedCreateNoLockFile() throws {
        let file = NSTemporaryDirectory() + "ppctl-apply-lock-\(getpid()).txt"
        defer { unlink(file) }
        try "198.18.0.20:80 --backend 198.18.2.2:8080\n".write(toFile: file, atomically: true, encoding: .utf8)
        for args in [
            ["service", "add", "198.18.0.10:80", "--backend", "198.18.2.2:8080"], ["service", "apply", file],
            ["service", "delete", "198.18.0.10:80"], ["backend", "add", "198.18.0.10:80", "198.18.2.2:80"],
            ["backend", "delete", "198.18.0.10:80", "198.18.2.2:80"]
        ] {
            let r = try lab.ppctl(args, check: false)
            XCTAssertEqual(r.status, 1, "\(args)")
            XCTAssertTrue(r.stderr.contains("not attached"), r.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: lab.lockPath), "\(args) left \(lab.lockPath)")
        }
    }
}
