import ArgumentParser
import Balancer
import XCTest

@testable import ppctl

/// ppctl's command lines parsed as ArgumentParser reads them, without root: each
/// value is parsed once into its type, `--netns` is the root's wherever it is, and
/// a `service apply` line reads exactly as the same words given to `service add`.
final class ParsingTests: XCTestCase {
    private func parse(_ arguments: [String]) throws -> ParsableCommand {
        try PPCtl.parseAsRoot(PPCtl.fillingBareCgroup(arguments))
    }

    /// The one-line message and exit code a bad command line gets.
    private func failure(_ arguments: [String]) -> (message: String, code: Int32)? {
        do {
            let command = try parse(arguments)
            if let add = command as? Service.Add { _ = try add.arguments.spec() }
            return nil
        } catch {
            return (PPCtl.message(for: error), PPCtl.exitCode(for: error).rawValue)
        }
    }

    func testServiceAddValuesArriveParsedAndTyped() throws {
        let command = try parse([
            "service", "add", "[2001:2::10]:80", "--proxy", "v2", "--backend", "[2001:2:0:2::2]:8080,weight=3",
            "--backend", "[2001:2:0:2::3]:8080", "--snat", "2001:2:0:2::a-2001:2:0:2::b",
            "--tlv", "0xE5=hex:0a0b", "--unique-id"
        ])
        let add = try XCTUnwrap(command as? Service.Add)
        XCTAssertEqual(add.vip, try Endpoint(parsing: "[2001:2::10]:80"))
        XCTAssertEqual(add.backends.map(\.weight), [3, 1])
        XCTAssertEqual(add.backends.map(\.endpoint.description), ["[2001:2:0:2::2]:8080", "[2001:2:0:2::3]:8080"])
        XCTAssertEqual(add.proxy, [.v2])
        XCTAssertEqual(add.snat?.map(\.description), ["2001:2:0:2::a", "2001:2:0:2::b"])
        XCTAssertEqual(add.tlvs.map(\.type), [0xE5])
        XCTAssertEqual(add.tlvs.first?.value, [0x0A, 0x0B])
        let spec = try add.arguments.spec()
        XCTAssertEqual(spec.proxy, .v2)
        XCTAssertTrue(spec.uniqueID)
    }

    func testNetnsIsTheRootsWhereverItIsGiven() throws {
        for arguments in [
            ["--netns", "lb1", "service", "list"], ["service", "--netns", "lb1", "list"],
            ["service", "list", "--netns", "lb1"], ["service", "list", "--netns=lb1"]
        ] {
            let list = try XCTUnwrap(try parse(arguments) as? Service.List, "\(arguments)")
            XCTAssertEqual(list.root.netns, "lb1", "\(arguments)")
        }
        let plain = try XCTUnwrap(try parse(["stats", "-o", "json"]) as? Stats)
        XCTAssertNil(plain.root.netns)
        XCTAssertEqual(plain.format.output, .json)
    }

    func testNetnsIsRefusedWhereNoBalancerIsInvolved() {
        for arguments in [["--netns", "lb1", "header", "decode", "00"], ["header", "encode", "--local", "--netns", "lb1"]] {
            let f = failure(arguments)
            XCTAssertEqual(f?.code, 64, "\(arguments)")
            XCTAssertTrue(f?.message.hasPrefix("--netns does not apply to `ppctl header") == true, "\(arguments): \(String(describing: f))")
        }
    }

    func testABadValueIsRefusedWithItsReasonAndExit64() {
        let cases: [([String], String)] = [
            (
                ["service", "add", "198.18.0.11:0", "--backend", "198.18.2.2:80"],
                "The value '198.18.0.11:0' is invalid for '<VIP:PORT>': port '0' is not in 1...65535"
            ),
            (
                ["service", "add", "198.18.0.11:80", "--backend", "198.18.2.2:80,weight=x"],
                "The value '198.18.2.2:80,weight=x' is invalid for '--backend <IP:PORT[,weight=N]>': weight 'x' is not a number in 1...10000"
            ),
            (
                ["service", "add", "198.18.0.11:80", "--proxy", "v3", "--backend", "198.18.2.2:80"],
                "The value 'v3' is invalid for '--proxy <v1|v2>'. Please provide one of 'v1' and 'v2'."
            ),
            (
                ["service", "add", "198.18.0.11:80", "--proxy", "none", "--backend", "198.18.2.2:80"],
                "The value 'none' is invalid for '--proxy <v1|v2>'. Please provide one of 'v1' and 'v2'."
            ),
            (
                ["service", "add", "198.18.0.11:80", "--proxy", "v1", "--proxyv2", "--backend", "198.18.2.2:80"],
                "give the PROXY version once, not --proxyv2 and --proxy v1"
            ),
            (
                ["service", "add", "198.18.0.11:80", "--snat", "224.0.0.1", "--backend", "198.18.2.2:80"],
                "The value '224.0.0.1' is invalid for '--snat <IP[-IP][,...]>': address 224.0.0.1 cannot be used: it is a multicast address"
            ),
            (
                ["attach", "--iface", "l0", "--snat-ports", "80-90"],
                "The value '80-90' is invalid for '--snat-ports <MIN-MAX>': SNAT ports are MIN-MAX with 1024 <= MIN <= MAX <= 65535"
            ),
            (["attach", "--iface", "a/b"], "The value 'a/b' is invalid for '--iface <IF>': not an interface name"),
            (
                ["backend", "add", "198.18.0.10:80", "198.18.2.2"],
                "The value '198.18.2.2' is invalid for '<IP:PORT[,weight=N]>': expected IP:PORT"
            )
        ]
        for (arguments, message) in cases {
            let f = failure(arguments)
            XCTAssertEqual(f?.code, 64, "\(arguments)")
            XCTAssertEqual(f?.message, message, "\(arguments)")
        }
    }

    func testABareCgroupIsTheUnifiedRoot() throws {
        let bare = try XCTUnwrap(try parse(["attach", "--cgroup", "--iface", "l0"]) as? Attach)
        XCTAssertEqual(bare.cgroup, Attach.rootCgroup)
        XCTAssertEqual(bare.interfaces, ["l0"])
        let given = try XCTUnwrap(try parse(["attach", "--cgroup", "ppctl/clients"]) as? Attach)
        XCTAssertEqual(given.cgroup, "ppctl/clients")
        XCTAssertNil(try XCTUnwrap(try parse(["attach", "--iface", "l0"]) as? Attach).cgroup)
    }

    /// The fast reader of `service apply` and ArgumentParser agree on every line:
    /// both accept it with the same spec, or both refuse it with the same message.
    func testServiceApplyLinesReadAsServiceAdd() throws {
        let lines = [
            "198.18.0.20:80 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080,weight=2",
            "198.18.0.22:80 --proxy v2 --unique-id --crc32c --tlv 0xE5=hex:0a0b --aws-vpce-id vpce-1 --backend 198.18.2.2:1",
            "--backend 198.18.2.2:2 198.18.0.23:80 --snat 198.18.2.1 --azure-link-id 7 --proxyv2",
            "[2001:2::10]:80 --backend [2001:2:0:2::2]:8080 --gcp-psc-id 9 --proxyv2",
            "198.18.0.21:80 --backend=198.18.2.2:8080 --proxy v1",
            "198.18.0.30:80 --backend 198.18.2.2:0",
            "198.18.0.30:80 --proxy v3 --backend 198.18.2.2:1",
            "198.18.0.30:80 --proxy=v3 --backend 198.18.2.2:1",
            "198.18.0.30:80 198.18.0.31:80 --backend 198.18.2.2:1",
            "198.18.0.30:80 --bogus --backend 198.18.2.2:1",
            "198.18.0.30:80 --snat nope --backend 198.18.2.2:1",
            "198.18.0.30:80 --tlv 0x01=x --proxyv2 --backend 198.18.2.2:1",
            "198.18.0.30:80 --backend 198.18.2.2:1 --backend 198.18.2.2:1"
        ]
        for line in lines {
            let words = line.split(separator: " ").map(String.init)
            let viaAdd = Result { () throws -> ServiceSpec? in
                try (try parse(["service", "add"] + words) as? Service.Add)?.arguments.spec()
            }
            let viaApply = Result { try Service.Apply.spec(Substring(line)) }
            switch (viaAdd, viaApply) {
            case (.success(let a), .success(let b)):
                XCTAssertNotNil(a, line)
                XCTAssertEqual(a, b, line)
            case (.failure(let a), .failure(let b)): XCTAssertEqual(PPCtl.message(for: a), PPCtl.message(for: b), line)
            default: XCTFail("\(line): add \(viaAdd), apply \(viaApply)")
            }
        }
        XCTAssertNotNil(ServiceArguments.quickParse(lines[0].split(separator: " ").map(String.init)), "the usual form takes the fast path")
    }

    func testServiceApplyRefusesNetnsInALine() {
        XCTAssertThrowsError(try Service.Apply.spec("198.18.0.20:80 --backend 198.18.2.2:8080 --netns other")) { error in
            XCTAssertEqual(PPCtl.message(for: error), "--netns does not belong in a line; give it to `ppctl service apply` itself")
        }
    }

    func testCommandPathSkipsNetns() {
        XCTAssertEqual(PPCtl.commandPath(["--netns", "lb", "service", "add", "x"]), ["service", "add"])
        XCTAssertEqual(PPCtl.commandPath(["service", "--netns=lb", "list"]), ["service", "list"])
    }
}
