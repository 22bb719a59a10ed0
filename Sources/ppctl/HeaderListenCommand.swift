import ArgumentParser
import Balancer
import Foundation
import ProxyProtocol

/// Minimal blocking sockets for `header listen` and `header probe`.
enum Socket {
    static func address(_ e: Endpoint) -> (storage: sockaddr_storage, length: socklen_t) {
        var ss = sockaddr_storage()
        var len: socklen_t = 0
        withUnsafeMutableBytes(of: &ss) { raw in
            switch e.address {
            case .v4(let a):
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = e.port.bigEndian
                sin.sin_addr.s_addr = a.hostOrder.bigEndian
                withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) }
                len = socklen_t(MemoryLayout<sockaddr_in>.size)
            case .v6(let a):
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = e.port.bigEndian
                withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: a.bytes) }
                withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) }
                len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
        return (ss, len)
    }

    static func endpoint(_ ss: sockaddr_storage) -> String {
        withUnsafeBytes(of: ss) { raw -> String in
            if Int32(ss.ss_family) == AF_INET6 {
                let sin6 = raw.load(as: sockaddr_in6.self)
                let bytes = withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }
                return Endpoint(address: .v6(IPv6Address(bytes: bytes)!), port: UInt16(bigEndian: sin6.sin6_port)).description
            }
            let sin = raw.load(as: sockaddr_in.self)
            return Endpoint(
                address: .v4(IPv4Address(hostOrder: UInt32(bigEndian: sin.sin_addr.s_addr))),
                port: UInt16(bigEndian: sin.sin_port)
            ).description
        }
    }

    static func check(_ rc: Int32, _ what: String) throws -> Int32 {
        if rc < 0 {
            printError("\(what): \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        return rc
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

extension Header {
    struct Listen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A PROXY-aware test backend: accept connections, print the client from the header and from the socket.",
            discussion: """
                Each connection must start with a PROXY header. ppctl prints one line per connection \
                (socket peer, then the header's source and destination), answers \
                "hello <client from the header>" and closes. The header must be there: it is never guessed.
                """)

        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("Address and port to listen on.", valueName: "IP:PORT"), transform: Parse.endpoint)
        var endpoint: Endpoint
        @Option(help: "Connections to serve before exiting.") var count: Int = 1
        @Option(help: "Seconds to wait for each connection and each header.") var timeout: Int = 10
        @Option(help: "Send this line first (a server-first protocol, like an SMTP banner).") var banner: String?

        func validate() throws {
            try root.refuseNetns("header listen")
            guard (1...100_000).contains(count) else { throw ValidationError("--count must be in 1...100000") }
            guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be in 1...3600") }
        }

        func run() throws {
            var (addr, len) = Socket.address(endpoint)
            let fd = try Socket.check(socket(Int32(addr.ss_family), Int32(SOCK_STREAM.rawValue), 0), "socket")
            defer { close(fd) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            _ = try Socket.check(
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) }
                }, "binding \(endpoint)")
            _ = try Socket.check(Glibc.listen(fd, 128), "listening on \(endpoint)")
            Socket.setTimeout(fd, seconds: timeout)
            for _ in 0..<count {
                var peer = sockaddr_storage()
                var peerLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let c = try Socket.check(
                    withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(fd, $0, &peerLen) }
                    }, "accepting on \(endpoint)")
                defer { close(c) }
                Socket.setTimeout(c, seconds: timeout)
                if let banner { _ = (banner + "\r\n").withCString { send(c, $0, strlen($0), 0) } }
                var received: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                var line = "peer \(Socket.endpoint(peer))"
                var reply = "no header\n"
                reading: while true {
                    let n = recv(c, &buffer, buffer.count, 0)
                    if n <= 0 {
                        line += "  header: connection closed before a whole header"
                        break
                    }
                    received += buffer[0..<n]
                    switch ProxyDecoder().decode(received) {
                    case .needMoreData: continue
                    case .invalid(let e):
                        line += "  header: invalid (\(e))"
                        break reading
                    case .header(let h, _):
                        line += "  " + describe(h)
                        if case .ipv4(let s, let sp, _, _, _) = h.addresses { reply = "hello \(s):\(sp)\n" }
                        if case .ipv6(let s, let sp, _, _, _) = h.addresses { reply = "hello [\(s)]:\(sp)\n" }
                        break reading
                    }
                }
                print(line)
                fflush(nil)
                _ = reply.withCString { send(c, $0, strlen($0), 0) }
            }
        }

        func describe(_ h: ProxyHeader) -> String {
            var text = "header v\(h.version.rawValue) "
            switch h.addresses {
            case .unspecified: text += h.command == .local ? "LOCAL" : "UNSPEC"
            case .ipv4(let s, let sp, let d, let dp, _): text += "source \(s):\(sp) destination \(d):\(dp)"
            case .ipv6(let s, let sp, let d, let dp, _): text += "source [\(s)]:\(sp) destination [\(d)]:\(dp)"
            case .unix: text += "UNIX"
            }
            for t in h.tlvs { text += " tlv:\(t.name)" }
            return text
        }
    }

    struct Probe: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Connect to a service, print the local address, send a line and print the answer.")

        @ParentCommand var root: PPCtl
        @Argument(help: ArgumentHelp("Address and port to connect to.", valueName: "IP:PORT"), transform: Parse.endpoint)
        var endpoint: Endpoint
        @Option(help: "The line to send.") var message: String = "hello"
        @Option(help: "Seconds to wait.") var timeout: Int = 10

        func validate() throws { try root.refuseNetns("header probe") }

        func run() throws {
            var (addr, len) = Socket.address(endpoint)
            let fd = try Socket.check(socket(Int32(addr.ss_family), Int32(SOCK_STREAM.rawValue), 0), "socket")
            defer { close(fd) }
            Socket.setTimeout(fd, seconds: timeout)
            _ = try Socket.check(
                withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) }
                }, "connecting to \(endpoint)")
            var local = sockaddr_storage()
            var localLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            withUnsafeMutablePointer(to: &local) {
                _ = $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &localLen) }
            }
            _ = (message + "\n").withCString { send(fd, $0, strlen($0), 0) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buffer, buffer.count, 0)
            let answer =
                n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "(no answer)"
            print("local \(Socket.endpoint(local)) -> \(endpoint): \(answer)")
        }
    }
}
