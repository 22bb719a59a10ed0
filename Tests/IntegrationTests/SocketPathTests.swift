import Datapath
import ProxyProtocol
import XCTest

/// The socket path (`ppctl attach --cgroup`): client processes on the balancer host,
/// in the balancer's namespace and in a test cgroup, connecting to services. The
/// client is a separate process (Scripts/localclient.py) that joined the cgroup;
/// backends are the test's own sockets, nginx and HAProxy in the backend namespace.
final class SocketPathTests: XCTestCase {
    var lab: Lab!
    var cgroup: String!
    var dir: String!

    override func setUpWithError() throws {
        lab = try Lab()
        cgroup = try lab.makeCgroup()
        dir = NSTemporaryDirectory() + "ppctl-sock-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        lab?.close()
        lab = nil
        if let dir { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// What the local client reported: its socket's names and what it got.
    struct Report: Decodable {
        var sockname: String?
        var peername: String?
        var error: String?
        var errno: Int?
        var received: String?
        var banner: String?
        var sent: Int?
        var count: Int?
        var intact: Bool?
        var first_errno: Int?
    }

    /// Runs the local client in the balancer's namespace, inside `cgroup` unless
    /// `outside`.
    func local(_ args: [String], outside: Bool = false) throws -> Report {
        let argv = ["/usr/bin/python3", Self.client] + args
        let r = outside ? try lab.run(argv, in: lab.balancer) : try lab.run(argv, in: lab.balancer, cgroup: cgroup)
        guard let line = r.stdout.split(separator: "\n").last else {
            throw LabError.commandFailed("localclient.py \(args.joined(separator: " "))", r.status, r.stderr)
        }
        return try JSONDecoder().decode(Report.self, from: Data(line.utf8))
    }

    /// Attaches the cgroup programs only: no `--iface`, so no tc egress sees a local
    /// client's SYN and every header takes the sk_msg path (sockops' fallback). The
    /// tests of the tc egress way call `lab.attach()` first.
    func attachCgroup() throws {
        let r = try lab.ppctl(["attach", "--cgroup", cgroup])
        XCTAssertTrue(r.stdout.contains("attached to cgroup \(cgroup!)"), r.stdout)
    }

    /// Every header so far went in front of a first send (sk_msg), none at tc.
    func assertHeadersBySkMsg(_ n: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try lab.counters()
        XCTAssertEqual(c["local_headers_pushed"], UInt64(n), "headers pushed by sk_msg: \(c)", file: file, line: line)
        XCTAssertEqual(c["headers_injected"], 0, "no header at tc egress: \(c)", file: file, line: line)
    }

    /// The ids of the programs attached to the test cgroup.
    func cgroupPrograms() throws -> [String] {
        let out = try lab.run(["/usr/sbin/bpftool", "-j", "cgroup", "show", cgroup]).stdout
        if out.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { return [] }  // nothing attached
        let list = (try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [[String: Any]]) ?? []
        return list.compactMap { ($0["name"] as? String) }.sorted()
    }

    // MARK: - Header, addresses, both families

    func testLocalClientReachesBackendWithHeaderWholeAndSeesTheVIP() throws {
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        try lab.ppctl(["service", "add", "[\(Lab.vip6)]:80", "--proxy", "v2", "--backend", "[\(Lab.backendAddress6)]:8080"])

        for (vip, backend) in [(Lab.vip, Lab.backendAddress), (Lab.vip6, Lab.backendAddress6)] {
            let server = try TCP.listen(lab, in: lab.backend, on: backend, 8080)
            let accepted = Background { () throws -> (ProxyHeader, [UInt8], Int) in
                let conn = try server.accept()
                // Receivers read the header with one peek as soon as bytes arrive
                // (nginx, HAProxy): the first thing that arrives must hold all of it.
                var peek = [UInt8](repeating: 0, count: 4096)
                let first = recv(conn.fd, &peek, peek.count, Int32(MSG_PEEK))
                var (header, rest) = try conn.readHeader()
                if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
                try conn.write("pong\n")
                return (header, rest, first)
            }
            let report = try local(["send", vip, "80", "ping"])
            let (header, rest, first) = try accepted.wait()

            XCTAssertNil(report.error, "\(report)")
            let expected = vip.contains(":") ? "[\(vip)]:80" : "\(vip):80"
            XCTAssertEqual(report.peername, expected, "getpeername() reports the VIP, not the backend")
            XCTAssertEqual(report.received, "pong\n")
            XCTAssertEqual(header.command, ProxyHeader.Command.proxy)
            XCTAssertEqual(
                header.addresses.endpoints?.source, report.sockname,
                "the header's source is the client socket's getsockname()")
            XCTAssertEqual(header.addresses.endpoints?.destination, expected, "the header's destination is the VIP")
            XCTAssertEqual(rest, Array("ping".utf8), "the client's bytes follow the header")
            XCTAssertEqual(
                first, try header.encoded().count + 4,
                "the header arrives whole, with the first send's bytes, in one segment")
        }
        try assertHeadersBySkMsg(2)
        XCTAssertEqual(try lab.counters()["local_connects"], 2)
    }

    /// A dual-stack socket (AF_INET6, as the JVM makes them) connecting to an IPv4 VIP
    /// names it ::ffff:198.18.0.10: the IPv4 service serves it, getpeername() gives
    /// the mapped VIP back, and the header is an IPv4 one.
    func testDualStackSocketsReachIPv4ServicesThroughMappedAddresses() throws {
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        let got = Background { () throws -> (ProxyHeader, [UInt8]) in
            let conn = try server.accept()
            var (header, rest) = try conn.readHeader()
            if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
            try conn.write("pong\n")
            return (header, rest)
        }
        let report = try local(["send", "::ffff:\(Lab.vip)", "80", "ping"])
        let (header, rest) = try got.wait()
        XCTAssertNil(report.error, "\(report)")
        XCTAssertEqual(report.peername, "[::ffff:\(Lab.vip)]:80")
        XCTAssertTrue(report.sockname?.hasPrefix("[::ffff:198.18.") ?? false, "a mapped client socket: \(report)")
        let source = header.addresses.endpoints?.source
        XCTAssertEqual(
            source.map { "[::ffff:\($0.split(separator: ":")[0])]:\($0.split(separator: ":")[1])" }, report.sockname,
            "the IPv4 header names the mapped socket's address and port")
        XCTAssertEqual(header.addresses.endpoints?.destination, "\(Lab.vip):80")
        XCTAssertEqual(rest, Array("ping".utf8))
        XCTAssertEqual(report.received, "pong\n")
        try assertHeadersBySkMsg(1)
    }

    /// After the header the connection runs no ppctl program: the socket has left
    /// the sockhash (the sk_msg program's scope) while the connection is still open.
    func testTheSocketLeavesTheSockhashOnceTheHeaderIsThrough() throws {
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        let served = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        let backend = Background { () throws -> [UInt8] in
            let conn = try server.accept()
            var (_, rest) = try conn.readHeader()
            if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
            try conn.write("pong\n")
            served.signal()
            _ = release.wait(timeout: .now() + 20)
            return rest  // the connection closes here
        }
        let client = Background { try self.local(["send", Lab.vip, "80", "ping"]) }
        XCTAssertEqual(served.wait(timeout: .now() + 20), .success)
        var entries = -1
        for _ in 0..<20 {  // the ack of the header takes a moment
            let dump = try lab.run([
                "/usr/sbin/bpftool", "-j", "map", "dump", "pinned",
                lab.instanceDirectory + "/" + Maps.Name.sockhash.rawValue
            ]).stdout
            entries = ((try? JSONSerialization.jsonObject(with: Data(dump.utf8))) as? [Any])?.count ?? -1
            if entries == 0 { break }
            usleep(50_000)
        }
        XCTAssertEqual(entries, 0, "the open connection's socket is no longer in ppctl_sockhash")
        release.signal()
        XCTAssertEqual(try backend.wait(), Array("ping".utf8))
        XCTAssertEqual(try client.wait().received, "pong\n")
        try assertHeadersBySkMsg(1)
    }

    func testPlainServiceGetsNoHeaderAndABackendlessServiceIsRefused() throws {
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):81", "--backend", "\(Lab.backendAddress):8081"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8081)
        let got = Background { () throws -> [UInt8] in
            let conn = try server.accept()
            let bytes = try conn.readExactly(5)
            try conn.write("ok\n")
            return bytes
        }
        let report = try local(["send", Lab.vip, "81", "hello"])
        XCTAssertEqual(try got.wait(), Array("hello".utf8), "a service without --proxy gets the client's bytes only")
        XCTAssertEqual(report.peername, "\(Lab.vip):81")

        try lab.ppctl(["service", "add", "\(Lab.vip):82", "--proxyv2", "--backend", "\(Lab.backendAddress):8082"])
        try lab.ppctl(["backend", "delete", "\(Lab.vip):82", "\(Lab.backendAddress):8082"])
        let refused = try local(["send", Lab.vip, "82", "x"])
        XCTAssertEqual(refused.errno, Int(ECONNREFUSED), "\(refused)")
    }

    // MARK: - Real receivers

    func testNginxAndHAProxyReadTheLocalClientsAddress() throws {
        try Peers.render(
            "nginx-http-echo.conf", to: dir + "/nginx.conf",
            [
                "DIR": dir, "NAME": "nginx", "LISTEN": "listen 198.18.2.2:8080 proxy_protocol;",
                "BODY": "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port"
            ])
        try Peers.nginx(lab, in: lab.backend, config: dir + "/nginx.conf", dir: dir)
        try Peers.render(
            "haproxy-echo.cfg", to: dir + "/haproxy.cfg",
            [
                "BIND": "bind 198.18.2.2:8081 accept-proxy", "FORMAT": "%[src]:%[src_port] %[dst]:%[dst_port]"
            ])
        try Peers.haproxy(lab, in: lab.backend, config: dir + "/haproxy.cfg", dir: dir)
        try lab.waitForListener(lab.backend, 8080)
        try lab.waitForListener(lab.backend, 8081)

        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        try lab.ppctl(["service", "add", "\(Lab.vip):81", "--proxy", "v1", "--backend", "\(Lab.backendAddress):8081"])

        let n = try local(["send", Lab.vip, "80", "GET / HTTP/1.0\r\n\r\n"])
        XCTAssertTrue(
            n.received?.hasSuffix("\r\n\r\n\(n.sockname ?? "?") \(Lab.vip):80\n") ?? false,
            "nginx's view of the local client: \(n)")

        let h = try local(["send", Lab.vip, "81", "GET / HTTP/1.0\r\n\r\n"])
        XCTAssertTrue(
            h.received?.hasSuffix("\r\n\r\n\(h.sockname ?? "?") \(Lab.vip):81\n") ?? false,
            "HAProxy's view of the local client: \(h.received ?? "nothing")")
        try assertHeadersBySkMsg(2)
    }

    // MARK: - Byte-exact transfers

    func testSixtyFourMiBEachWayByteExact() throws {
        try attachCgroup()
        try lab.ppctl([
            "service", "add", "\(Lab.vip):80", "--proxyv2", "--unique-id", "--crc32c",
            "--backend", "\(Lab.backendAddress):8080"
        ])
        let total = 64 << 20
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        let backend = Background { () throws -> (ProxyHeader, Int, Bool) in
            let conn = try server.accept()
            let (header, rest) = try conn.readHeader()
            let sender = Background { () throws -> Void in
                try conn.sendPattern(seed: 2, total: total)
                conn.shutdownWrite()
            }
            let (count, intact) = try conn.receivePattern(seed: 1, prefix: rest)
            try sender.wait(timeout: 120)
            return (header, count, intact)
        }
        let report = try local(["stream", Lab.vip, "80", "\(total)"])
        let (header, count, intact) = try backend.wait(timeout: 120)
        XCTAssertEqual(header.addresses.endpoints?.source, report.sockname)
        XCTAssertNotNil(header.tlvs.first { $0.type == 0x05 }, "the UNIQUE_ID TLV is there")
        XCTAssertEqual(count, total, "client → backend byte count")
        XCTAssertTrue(intact, "client → backend bytes are the client's, in order")
        XCTAssertEqual(report.count, total, "backend → client byte count: \(report)")
        XCTAssertEqual(report.intact, true, "backend → client bytes are the backend's, in order")
        try assertHeadersBySkMsg(1)
    }

    // MARK: - The header at tc egress: backends that speak first

    /// The backend speaks first: the local client waits for the banner and sends
    /// nothing before it, so the header cannot wait for a first send. With tc
    /// attached on the way to the backend it goes out on the handshake ACK at tc
    /// egress, with the sequence translation of the tc path, for a plain `--proxyv2`
    /// service: no flag needed.
    func testBackendsThatSpeakFirstGetTheHeaderBeforeTheClientSpeaks() throws {
        try lab.attach()
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):25", "--proxyv2", "--backend", "\(Lab.backendAddress):2525"])

        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 2525)
        let smtp = Background { () throws -> (ProxyHeader, [UInt8], [UInt8]) in
            let conn = try server.accept()
            let (header, early) = try conn.readHeader()
            try conn.write("220 ppctl.test ESMTP\r\n")
            let quit = try conn.readExactly(6)
            try conn.write("221 bye\r\n")
            return (header, early, quit)
        }
        let report = try local(["banner", Lab.vip, "25"])
        let (header, early, quit) = try smtp.wait()
        XCTAssertEqual(early, [], "nothing of the client's before the banner")
        XCTAssertEqual(header.addresses.endpoints?.source, report.sockname)
        XCTAssertEqual(header.addresses.endpoints?.destination, "\(Lab.vip):25")
        XCTAssertEqual(report.peername, "\(Lab.vip):25")
        XCTAssertEqual(report.banner, "220 ppctl.test ESMTP\r\n", "\(report)")
        XCTAssertEqual(quit, Array("QUIT\r\n".utf8))
        XCTAssertEqual(report.received, "221 bye\r\n")

        // The same over IPv6.
        try lab.ppctl([
            "service", "add", "[\(Lab.vip6)]:25", "--proxyv2",
            "--backend", "[\(Lab.backendAddress6)]:2525"
        ])
        let server6 = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress6, 2525)
        let smtp6 = Background { () throws -> (ProxyHeader, [UInt8]) in
            let conn = try server6.accept()
            let result = try conn.readHeader()
            try conn.write("220 ppctl.test ESMTP\r\n")
            _ = try conn.readExactly(6)
            try conn.write("221 bye\r\n")
            return result
        }
        let report6 = try local(["banner", Lab.vip6, "25"])
        let (header6, early6) = try smtp6.wait()
        XCTAssertEqual(early6, [])
        XCTAssertEqual(header6.addresses.endpoints?.source, report6.sockname)
        XCTAssertEqual(header6.addresses.endpoints?.destination, "[\(Lab.vip6)]:25")
        XCTAssertEqual(report6.peername, "[\(Lab.vip6)]:25")
        XCTAssertEqual(report6.banner, "220 ppctl.test ESMTP\r\n", "\(report6)")
        XCTAssertEqual(report6.received, "221 bye\r\n")

        // Bulk data both ways through the translated sequence space.
        let total = 16 << 20
        let bulk = Background { () throws -> (Int, Bool) in
            let conn = try server.accept()
            let (_, rest) = try conn.readHeader()
            let sender = Background { () throws -> Void in
                try conn.sendPattern(seed: 2, total: total)
                conn.shutdownWrite()
            }
            let result = try conn.receivePattern(seed: 1, prefix: rest)
            try sender.wait(timeout: 120)
            return result
        }
        let stream = try local(["stream", Lab.vip, "25", "\(total)"])
        let (count, intact) = try bulk.wait(timeout: 120)
        XCTAssertEqual(count, total)
        XCTAssertTrue(intact, "client → backend bytes intact after the header")
        XCTAssertEqual(stream.count, total, "\(stream)")
        XCTAssertEqual(stream.intact, true, "backend → client bytes intact (acks translated)")

        // nginx speaks first too once it has the header (stream `return`).
        try Peers.render(
            "nginx-stream-echo.conf", to: dir + "/nginx.conf",
            [
                "DIR": dir, "LISTEN": "listen 198.18.2.2:8025 proxy_protocol;",
                "FORMAT": "$proxy_protocol_addr:$proxy_protocol_port $proxy_protocol_server_addr:$proxy_protocol_server_port"
            ])
        try Peers.nginx(lab, in: lab.backend, config: dir + "/nginx.conf", dir: dir)
        try lab.waitForListener(lab.backend, 8025)
        // `--server-first` is still accepted and listed; it changes nothing.
        try lab.ppctl(["service", "add", "\(Lab.vip):26", "--proxy", "v1", "--server-first", "--backend", "\(Lab.backendAddress):8025"])
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("server-first"))
        let n = try local(["banner", Lab.vip, "26"])
        XCTAssertEqual(n.banner, "\(n.sockname ?? "?") \(Lab.vip):26\n", "nginx's banner names the local client: \(n)")

        let stats = try lab.counters()
        XCTAssertEqual(stats["headers_injected"], 4, "every header went out at tc: \(stats)")
        let ct = try lab.ppctl(["conntrack", "list", "-o", "json"]).stdout
        XCTAssertTrue(ct.contains("\"local\""), "conntrack list marks local connections: \(ct)")
        XCTAssertEqual(stats["local_headers_pushed"], 0, "and none by sk_msg: \(stats)")
    }

    /// A client that speaks first, with tc attached: its header goes out at tc too,
    /// ahead of its first bytes, which follow it translated.
    func testWithTcAClientThatSpeaksFirstGetsTheHeaderAtTc() throws {
        try lab.attach()
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        let got = Background { () throws -> (ProxyHeader, [UInt8]) in
            let conn = try server.accept()
            var (header, rest) = try conn.readHeader()
            if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
            try conn.write("pong\n")
            return (header, rest)
        }
        let report = try local(["send", Lab.vip, "80", "ping"])
        let (header, rest) = try got.wait()
        XCTAssertEqual(header.addresses.endpoints?.source, report.sockname)
        XCTAssertEqual(header.addresses.endpoints?.destination, "\(Lab.vip):80")
        XCTAssertEqual(rest, Array("ping".utf8))
        XCTAssertEqual(report.received, "pong\n")
        XCTAssertEqual(report.peername, "\(Lab.vip):80")
        let stats = try lab.counters()
        XCTAssertEqual(stats["headers_injected"], 1, "\(stats)")
        XCTAssertEqual(stats["local_headers_pushed"], 0, "\(stats)")
    }

    /// A local client's segments are rewritten at tc egress (the header segment, the
    /// sequence shift), where the skb is still CHECKSUM_PARTIAL: the field the program
    /// writes is the seed the rest is summed from, by veth's receiver never (partial,
    /// the default) or in software before the packet leaves (offload off: full). Both
    /// as the backend receives them (ChecksumCapture: a veth receiver checks neither).
    func testAtTcEgressTheClientsSegmentsKeepTheirChecksumRight() throws {
        try lab.attach()
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        for offloadOff in [false, true] {
            if offloadOff { try lab.exec(lab.balancer, ["ethtool", "-K", "l1", "tx", "off"]) }
            let capture = try ChecksumCapture(lab, in: lab.backend, iface: "b0", port: 8080)
            let got = Background { () throws -> [UInt8] in
                let conn = try server.accept()
                var (_, rest) = try conn.readHeader()
                if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
                try conn.write("pong\n")
                return rest
            }
            let report = try local(["send", Lab.vip, "80", "ping"])
            XCTAssertEqual(try got.wait(), Array("ping".utf8))
            XCTAssertEqual(report.received, "pong\n")
            let r = try capture.report()
            XCTAssertEqual(r.bad, [], "offload off: \(offloadOff): \(r.text)")
            XCTAssertGreaterThan(offloadOff ? r.full : r.partial, 0, "segments of the kind under test: \(r.text)")
        }
        XCTAssertEqual(try lab.counter("headers_injected"), 2, "both headers at tc egress")
    }

    func testWithoutTcTheHeaderFallsBackToTheFirstSend() throws {
        // No --iface: no tc egress sees the SYN, so the socket path keeps the header
        // for the first send rather than never sending it.
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):25", "--proxyv2", "--backend", "\(Lab.backendAddress):2525"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 2525)
        let got = Background { () throws -> (ProxyHeader, [UInt8]) in
            let conn = try server.accept()
            var (header, rest) = try conn.readHeader()
            if rest.count < 4 { rest += try conn.readExactly(4 - rest.count) }
            try conn.write("ok\n")
            return (header, rest)
        }
        let report = try local(["send", Lab.vip, "25", "EHLO"])
        let (header, rest) = try got.wait()
        XCTAssertEqual(header.addresses.endpoints?.source, report.sockname)
        XCTAssertEqual(rest, Array("EHLO".utf8))
        try assertHeadersBySkMsg(1)
    }

    // MARK: - Who is touched

    func testProcessesOutsideTheCgroupAndOtherAddressesAreUntouched() throws {
        try attachCgroup()
        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        for outside in [true, false] {
            // A backend address itself is not a service: no header, whoever connects.
            let got = Background { () throws -> [UInt8] in
                let conn = try server.accept()
                let bytes = try conn.readExactly(4)
                try conn.write("ok\n")
                return bytes
            }
            let direct = try local(["send", Lab.backendAddress, "8080", "raw!"], outside: outside)
            XCTAssertEqual(try got.wait(), Array("raw!".utf8), "no header on a connection to a non-service (outside: \(outside))")
            XCTAssertEqual(direct.peername, "\(Lab.backendAddress):8080")
        }
        // Outside the cgroup the VIP is an address like any other: the balancer's
        // namespace has no route to it.
        let outside = try local(["send", Lab.vip, "80", "x"], outside: true)
        XCTAssertEqual(outside.errno, Int(ENETUNREACH), "\(outside)")
        let stats = try lab.ppctl(["stats", "-o", "json"]).stdout
        XCTAssertTrue(stats.contains("\"local_connects\" : 0"), stats)
    }

    func testASocketThatConnectsAgainElsewhereForgetsTheVIP() throws {
        try attachCgroup()
        // The ring sends the first connect to a backend where nothing listens.
        try lab.ppctl(["service", "add", "\(Lab.vip):83", "--proxyv2", "--backend", "\(Lab.backendAddress):8083"])
        let server = try TCP.listen(lab, in: lab.backend, on: Lab.backendAddress, 8080)
        let got = Background { () throws -> [UInt8] in
            let conn = try server.accept()
            let bytes = try conn.readExactly(5)
            try conn.write("ok\n")
            return bytes
        }
        let report = try local(["reconnect", Lab.vip, "83", Lab.backendAddress, "8080"])
        XCTAssertEqual(report.first_errno, Int(ECONNREFUSED), "\(report)")
        XCTAssertNil(report.error, "\(report)")
        XCTAssertEqual(report.peername, "\(Lab.backendAddress):8080", "getpeername() no longer says the VIP")
        XCTAssertEqual(try got.wait(), Array("again".utf8), "and no header goes to the second address")
    }

    // MARK: - Attach and detach

    func testDetachLeavesNoProgramAttached() throws {
        try attachCgroup()
        XCTAssertEqual(
            try cgroupPrograms(),
            [
                "ppctl_connect4", "ppctl_connect6", "ppctl_getpeername4",
                "ppctl_getpeername6", "ppctl_sockops"
            ])
        // Attaching again upgrades in place: still one program per hook.
        try attachCgroup()
        XCTAssertEqual(try cgroupPrograms().count, 5)

        try lab.ppctl(["service", "add", "\(Lab.vip):80", "--proxyv2", "--backend", "\(Lab.backendAddress):8080"])
        let detach = try lab.ppctl(["detach", "--cgroup", cgroup])
        XCTAssertTrue(detach.stdout.contains("detached from cgroup \(cgroup!)"), detach.stdout)
        XCTAssertEqual(try cgroupPrograms(), [])
        // The service stays, but local clients no longer reach it.
        XCTAssertTrue(try lab.ppctl(["service", "list"]).stdout.contains("\(Lab.vip):80"))
        XCTAssertEqual(try local(["send", Lab.vip, "80", "x"]).errno, Int(ENETUNREACH))
        let again = try lab.ppctl(["detach", "--cgroup", cgroup], check: false)
        XCTAssertEqual(again.status, 1)
        XCTAssertTrue(again.stderr.contains("not attached to cgroup"), again.stderr)

        // Detaching everything takes the cgroup programs and every pin with it.
        try attachCgroup()
        let msgProgram = try lab.run([
            "/usr/sbin/bpftool", "-j", "map", "show", "pinned",
            lab.instanceDirectory + "/" + Maps.Name.sockhash.rawValue
        ]).stdout
        XCTAssertTrue(msgProgram.contains("\"id\""), msgProgram)
        try lab.ppctl(["detach"])
        XCTAssertEqual(try cgroupPrograms(), [])
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory))
        // Under `ip netns exec` (a private /sys without the cgroup tree) too.
        let viaExec = try lab.exec(lab.balancer, [Lab.ppctlPath, "attach", "--cgroup", cgroup])
        XCTAssertTrue(viaExec.stdout.contains("attached to cgroup \(cgroup!)"), viaExec.stdout)
        XCTAssertEqual(try cgroupPrograms().count, 5)
        try lab.ppctl(["detach"])
        XCTAssertEqual(try cgroupPrograms(), [])

        let bad = try lab.ppctl(["attach", "--cgroup", "/tmp"], check: false)
        XCTAssertEqual(bad.status, 64)
        XCTAssertFalse(FileManager.default.fileExists(atPath: lab.instanceDirectory), "a refused attach creates nothing")
    }

    // MARK: - The local client

    /// Scripts/localclient.py, run by `local(_:)`: `localclient.py MODE HOST PORT ...`,
    /// one JSON line on stdout:
    /// - send HOST PORT TEXT: connect, send TEXT, read to the end;
    /// - banner HOST PORT: connect, read a line first, then send "QUIT\r\n", read to the end;
    /// - stream HOST PORT N: send N bytes of pattern 1 while checking pattern 2 coming back.
    /// The patterns are `Pattern.block` (xorshift32), the same bytes the Swift side makes.
    static let client = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Scripts/localclient.py").path
}

extension ProxyHeader.Addresses {
    /// "address:port" of both ends ("[v6]:port"), as the local client prints them.
    var endpoints: (source: String, destination: String)? {
        switch self {
        case .ipv4(let s, let sp, let d, let dp, _): return ("\(s):\(sp)", "\(d):\(dp)")
        case .ipv6(let s, let sp, let d, let dp, _): return ("[\(s)]:\(sp)", "[\(d)]:\(dp)")
        default: return nil
        }
    }
}
