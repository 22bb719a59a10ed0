import FaultABI
import ProxyProtocol
import XCTest

/// PROXY v1, TLVs and IPv6 through the datapath, read by real receivers: nginx
/// (`listen ... proxy_protocol`), HAProxy (`bind ... accept-proxy`), tshark, and the
/// ProxyProtocol library byte for byte.
final class ProtocolTests: XCTestCase {
    var lab: Lab!
    var dir: String!

    override func setUpWithError() throws {
        lab = try Lab()
        try lab.attach()
        dir = NSTemporaryDirectory() + "ppctl-proto-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        lab?.close()
        lab = nil
        if let dir { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// Reads what a backend that answers and closes says.
    func ask(_ host: String, _ port: UInt16, send: String = "") throws -> String {
        let c = try TCP.connect(lab, from: lab.client, to: host, port)
        if !send.isEmpty { try c.write(send) }
        var out: [UInt8] = []
        while true {
            let chunk = try c.read()
            if chunk.isEmpty { break }
            out += chunk
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: - nginx

    func startNginx() throws {
        try Peers.render(
            "nginx-stream-echo.conf", to: dir + "/nginx.conf",
            [
                "DIR": dir,
                "LISTEN": "listen 198.18.2.2:8080 proxy_protocol; listen [2001:2:0:2::2]:8080 proxy_protocol;",
                "FORMAT": "$proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr $proxy_protocol_server_port"
            ])
        try Peers.nginx(lab, in: lab.backend, config: dir + "/nginx.conf", dir: dir)
        try lab.waitForListener(lab.backend, 8080)
    }

    func testNginxReadsV1AndV2OverIPv4AndIPv6() throws {
        try startNginx()
        try lab.ppctl(["service", "add", "198.18.0.10:80", "--proxy", "v1", "--backend", "198.18.2.2:8080"])
        try lab.ppctl(["service", "add", "198.18.0.10:82", "--proxy", "v2", "--backend", "198.18.2.2:8080"])
        try lab.ppctl(["service", "add", "[2001:2::10]:80", "--proxy", "v1", "--backend", "[2001:2:0:2::2]:8080"])
        try lab.ppctl([
            "service", "add", "[2001:2::10]:82", "--proxy", "v2", "--tlv", "0xE5=tenant-42",
            "--backend", "[2001:2:0:2::2]:8080"
        ])
        for (vip, port) in [(Lab.vip, UInt16(80)), (Lab.vip, 82), (Lab.vip6, 80), (Lab.vip6, 82)] {
            let c = try TCP.connect(lab, from: lab.client, to: vip, port)
            let local = c.localEndpoint
            let answer = String(decoding: try c.read(), as: UTF8.self)
            let parts = answer.split(separator: " ").map(String.init)
            XCTAssertEqual(parts.count, 4, "nginx answered '\(answer)' for \(vip):\(port)")
            guard parts.count == 4 else { continue }
            // v1 carries IPv6 as eight groups; nginx echoes the text it read.
            let address = IPv6Address(parts[0])?.description ?? parts[0]
            let client = vip.contains(":") ? "[\(address)]:\(parts[1])" : "\(address):\(parts[1])"
            XCTAssertEqual(client, local, "nginx's $proxy_protocol_addr/port is the client (\(vip):\(port))")
            XCTAssertEqual(IPv6Address(parts[2])?.description ?? parts[2], IPv6Address(vip)?.description ?? vip)
            XCTAssertEqual(parts[3].trimmingCharacters(in: .whitespacesAndNewlines), "\(port)")
        }
    }

    // MARK: - HAProxy

    func startHAProxy() throws {
        try Peers.render(
            "haproxy-echo.cfg", to: dir + "/haproxy.cfg",
            [
                "BIND": "bind 198.18.2.2:8081 accept-proxy\n    bind [2001:2:0:2::2]:8081 accept-proxy",
                "FORMAT": "%[src] %[src_port] %[dst] %[dst_port] %[fc_pp_unique_id] %[fc_rcvd_proxy]"
            ])
        try Peers.haproxy(lab, in: lab.backend, config: dir + "/haproxy.cfg", dir: dir)
        do { try lab.waitForListener(lab.backend, 8081) } catch {
            print((try? String(contentsOfFile: dir + "/haproxy.log", encoding: .utf8)) ?? "")
            throw error
        }
    }

    func testHAProxyReadsUniqueIDAndCRCAndRefusesABadCRC() throws {
        try startHAProxy()
        try lab.ppctl([
            "service", "add", "198.18.0.10:81", "--proxy", "v2", "--unique-id", "--crc32c",
            "--aws-vpce-id", "vpce-08d2bf15fac5001c9", "--backend", "198.18.2.2:8081"
        ])
        try lab.ppctl([
            "service", "add", "[2001:2::10]:81", "--proxy", "v2", "--unique-id", "--crc32c",
            "--backend", "[2001:2:0:2::2]:8081"
        ])
        var ids = Set<String>()
        for vip in [Lab.vip, Lab.vip6, Lab.vip] {
            let c = try TCP.connect(lab, from: lab.client, to: vip, 81)
            let local = c.localEndpoint
            try c.write("GET / HTTP/1.0\r\n\r\n")
            var response: [UInt8] = []
            while true {
                let chunk = try c.read()
                if chunk.isEmpty { break }
                response += chunk
            }
            let text = String(decoding: response, as: UTF8.self)
            guard let body = text.components(separatedBy: "\r\n\r\n").last else {
                XCTFail(text)
                continue
            }
            let f = body.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").map(String.init)
            XCTAssertEqual(f.count, 6, body)
            guard f.count == 6 else { continue }
            let client = vip.contains(":") ? "[\(f[0])]:\(f[1])" : "\(f[0]):\(f[1])"
            XCTAssertEqual(client, local, "HAProxy's src is the client")
            XCTAssertEqual(f[3], "81")
            XCTAssertEqual(f[4].count, 16, "fc_pp_unique_id is the 16-hex-digit id: \(f[4])")
            XCTAssertEqual(f[5], "1", "fc_rcvd_proxy")
            ids.insert(f[4])
            let conntrack = try lab.ppctl(["conntrack", "list"]).stdout
            XCTAssertTrue(conntrack.contains(f[4]), "ppctl conntrack list shows the same unique id")
        }
        XCTAssertEqual(ids.count, 3, "a different unique id for every connection")

        // A header with a wrong CRC, sent straight from the balancer's namespace: HAProxy drops it.
        var good = try ProxyHeader(
            addresses: .ipv4(
                source: IPv4Address(198, 18, 1, 2), sourcePort: 1234,
                destination: IPv4Address(198, 18, 0, 10), destinationPort: 81,
                transport: .stream)
        ).encoded(crc32c: true)
        let request = Array("GET / HTTP/1.0\r\n\r\n".utf8)
        func send(_ header: [UInt8]) throws -> String {
            let c = try TCP.connect(lab, from: lab.balancer, to: Lab.backendAddress, 8081)
            try c.write(header + request)
            var out: [UInt8] = []
            // A refused header ends in a reset: that is an answer too.
            while let chunk = try? c.read(), !chunk.isEmpty { out += chunk }
            return String(decoding: out, as: UTF8.self)
        }
        XCTAssertTrue(try send(good).contains("198.18.1.2 1234"), "the right CRC is accepted")
        good[good.count - 1] ^= 0xFF
        XCTAssertFalse(try send(good).contains("200"), "a wrong CRC is refused")
    }

    // MARK: - tshark and the codec, byte for byte

    func testEveryTLVTypeReachesTheBackendAsTsharkAndTheCodecReadIt() throws {
        try lab.ppctl([
            "service", "add", "198.18.0.10:83", "--proxy", "v2", "--tlv", "0xE5=tenant-42",
            "--tlv", "0xE7=hex:00ff", "--aws-vpce-id", "vpce-0abc", "--azure-link-id", "305419896",
            "--gcp-psc-id", "72623859790382856", "--unique-id", "--crc32c", "--backend", "198.18.2.2:8083"
        ])
        let pcap = dir + "/b0.pcap"
        _ = try lab.spawn(lab.backend, ["/usr/bin/tshark", "-q", "-i", "b0", "-f", "tcp port 8083", "-w", pcap])
        usleep(1_500_000)
        let server = try TCP.listen(lab, in: lab.backend, on: "198.18.2.2", 8083)
        let backend = Background { () throws -> (ProxyHeader, [UInt8]) in
            let c = try server.accept()
            var raw: [UInt8] = []
            while true {
                raw += try c.read()
                if case .header(let h, let n) = ProxyDecoder().decode(raw) { return (h, Array(raw[..<n])) }
            }
        }
        let client = try TCP.connect(lab, from: lab.client, to: Lab.vip, 83)
        let (header, raw) = try backend.wait()
        XCTAssertEqual(header.tlvs.first { $0.type == 0xE5 }?.value, Array("tenant-42".utf8))
        XCTAssertEqual(header.tlvs.first { $0.type == 0xE7 }?.value, [0x00, 0xFF])
        XCTAssertEqual(header.awsVPCEndpointID, "vpce-0abc")
        XCTAssertEqual(header.azureLinkID, 305_419_896)
        XCTAssertEqual(header.gcpPSCConnectionID, 72_623_859_790_382_856)
        XCTAssertEqual(header.uniqueID?.count, 16)
        XCTAssertNotNil(header.crc32c, "the kernel's CRC32C verified by the decoder")
        // Byte for byte: the same header rebuilt by the library.
        guard case .ipv4(let s, let sp, let d, let dp, _) = header.addresses else { return XCTFail() }
        XCTAssertEqual("\(s):\(sp)", client.localEndpoint)
        let rebuilt = try ProxyHeader(
            addresses: .ipv4(
                source: s, sourcePort: sp, destination: d, destinationPort: dp,
                transport: .stream),
            tlvs: header.tlvs.filter { $0.type != 0x03 }
        ).encoded(crc32c: true)
        XCTAssertEqual(rebuilt, raw)
        usleep(500_000)
        try lab.sh("pkill -INT -f 'tshark -q -i b0 -f tcp port 8083 -w \(pcap)' ; sleep 1", check: false)
        let fields = try lab.run([
            "/usr/bin/tshark", "-r", pcap, "-o", "tcp.try_heuristic_first:TRUE", "-T", "fields",
            "-e", "proxy.src.ipv4", "-e", "proxy.v2.tlv.type"
        ]).stdout
        XCTAssertTrue(fields.contains("198.18.1.2"), fields)
        // tshark 4.0 lists the TLVs up to the CRC32C one, which it does not show as a
        // TLV; the decoder above verified that CRC.
        for type in ["0xe5", "0xe7", "0xea", "0xee", "0xe0", "0x05"] {
            XCTAssertTrue(fields.lowercased().contains(type), "tshark decodes TLV \(type): \(fields)")
        }
    }

    // MARK: - Loss on a v1 service and on an IPv6 service with TLVs

    func testV1AndIPv6WithTLVsSurviveLossOfTheHeaderSegment() throws {
        try lab.ppctl(["service", "add", "198.18.0.10:84", "--proxy", "v1", "--backend", "198.18.2.2:8084"])
        try lab.ppctl([
            "service", "add", "[2001:2::10]:84", "--proxy", "v2", "--tlv", "0xE5=tenant-42", "--unique-id",
            "--crc32c", "--backend", "[2001:2:0:2::2]:8084"
        ])
        for (vip, listen) in [(Lab.vip, "198.18.2.2"), (Lab.vip6, Lab.backendAddress6)] {
            for serverFirst in [false, true] {
                let f = try FaultInjector(ns: lab.backend, iface: "b0", hook: .ingress)
                try f.set(0, .init(destinationPort: 8084, payload: FAULT_PAYLOAD_SOME, action: FAULT_DROP))
                let server = try TCP.listen(lab, in: lab.backend, on: listen, 8084)
                let backend = Background { () throws -> (ProxyHeader, [UInt8]) in
                    let c = try server.accept()
                    if serverFirst { try c.write("220 ready\r\n") }
                    let (h, rest) = try c.readHeader()
                    var body = rest
                    while body.count < 5 { body += try c.read() }
                    try c.write("bye")
                    return (h, body)
                }
                let start = Date()
                let c = try TCP.connect(lab, from: lab.client, to: vip, 84)
                if serverFirst { _ = try c.readExactly(11) }
                try c.write("hello")
                let (h, body) = try backend.wait()
                XCTAssertEqual(try c.read(), Array("bye".utf8))
                print(
                    "recovery header-lost \(vip.contains(":") ? "ipv6-v2-tlv" : "ipv4-v1") \(serverFirst ? "server-first" : "client-first"): \(String(format: "%.3f", Date().timeIntervalSince(start))) s"
                )
                XCTAssertEqual(body, Array("hello".utf8), "one header, then the data")
                XCTAssertEqual(h.version, vip.contains(":") ? .v2 : .v1)
                switch h.addresses {
                case .ipv4(let s, let sp, _, _, _): XCTAssertEqual("\(s):\(sp)", c.localEndpoint)
                case .ipv6(let s, let sp, _, _, _): XCTAssertEqual("[\(s)]:\(sp)", c.localEndpoint)
                default: XCTFail("\(h)")
                }
                XCTAssertEqual(f.counters(0).applied, 1)
            }
        }
    }
}
