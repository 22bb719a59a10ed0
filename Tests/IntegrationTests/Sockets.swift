import Foundation
import ProxyProtocol

/// Blocking TCP helpers for tests, on sockets created inside lab namespaces.
final class TCP {
    let fd: Int32

    init(fd: Int32, timeout: Int = 20) {
        self.fd = fd
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(fd) }

    static func sockaddr(_ host: String, _ port: UInt16) -> (sockaddr_storage, socklen_t) {
        var ss = sockaddr_storage()
        var len: socklen_t = 0
        withUnsafeMutableBytes(of: &ss) { raw in
            if host.contains(":") {
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = port.bigEndian
                inet_pton(AF_INET6, host, &sin6.sin6_addr)
                withUnsafeBytes(of: sin6) { raw.copyMemory(from: $0) }
                len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            } else {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = port.bigEndian
                inet_pton(AF_INET, host, &sin.sin_addr)
                withUnsafeBytes(of: sin) { raw.copyMemory(from: $0) }
                len = socklen_t(MemoryLayout<sockaddr_in>.size)
            }
        }
        return (ss, len)
    }

    /// Connects a socket made in `ns` to host:port.
    static func connect(
        _ lab: Lab, from ns: String, to host: String, _ port: UInt16, timeout: Int = 20,
        configure: (Int32) -> Void = { _ in }
    ) throws -> TCP {
        let fd = try lab.socket(in: ns, family: host.contains(":") ? AF_INET6 : AF_INET)
        configure(fd)
        let conn = TCP(fd: fd, timeout: timeout)
        var (ss, len) = sockaddr(host, port)
        let rc = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
        guard rc == 0 else { throw LabError.system("connect to \(host):\(port)", errno) }
        return conn
    }

    /// A listening socket in `ns`.
    static func listen(
        _ lab: Lab, in ns: String, on host: String, _ port: UInt16,
        configure: (Int32) -> Void = { _ in }
    ) throws -> TCP {
        let fd = try lab.socket(in: ns, family: host.contains(":") ? AF_INET6 : AF_INET)
        configure(fd)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var (ss, len) = sockaddr(host, port)
        let rc = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard rc == 0, Glibc.listen(fd, 512) == 0 else { throw LabError.system("listen on \(host):\(port)", errno) }
        return TCP(fd: fd)
    }

    func accept() throws -> TCP {
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { throw LabError.system("accept", errno) }
        return TCP(fd: c)
    }

    /// "address:port" (IPv6 in brackets) of the local end.
    var localEndpoint: String { endpoint(getsockname) }
    var peerEndpoint: String { endpoint(getpeername) }

    private func endpoint(_ f: (Int32, UnsafeMutablePointer<Glibc.sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32) -> String {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { f(fd, $0, &len) } }
        var buf = [CChar](repeating: 0, count: 64)
        return withUnsafeBytes(of: ss) { raw in
            if Int32(ss.ss_family) == AF_INET6 {
                var sin6 = raw.load(as: sockaddr_in6.self)
                inet_ntop(AF_INET6, &sin6.sin6_addr, &buf, 64)
                return "[\(String(cString: buf))]:\(UInt16(bigEndian: sin6.sin6_port))"
            }
            var sin = raw.load(as: sockaddr_in.self)
            inet_ntop(AF_INET, &sin.sin_addr, &buf, 64)
            return "\(String(cString: buf)):\(UInt16(bigEndian: sin.sin_port))"
        }
    }

    func write(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw LabError.system("send", errno) }
            off += n
        }
    }

    func write(_ text: String) throws { try write(Array(text.utf8)) }

    /// Reads up to `max` bytes; [] at end of stream.
    func read(max: Int = 65536) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: max)
        let n = recv(fd, &buf, max, 0)
        guard n >= 0 else { throw LabError.system("recv", errno) }
        return Array(buf[0..<n])
    }

    func readExactly(_ count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < count {
            let chunk = try read(max: count - out.count)
            guard !chunk.isEmpty else { throw LabError.timeout("stream ended after \(out.count) of \(count) bytes") }
            out += chunk
        }
        return out
    }

    /// Reads bytes until the decoder has a whole PROXY header; returns it and what came after.
    func readHeader() throws -> (ProxyHeader, [UInt8]) {
        var received: [UInt8] = []
        while true {
            let chunk = try read(max: 4096)
            guard !chunk.isEmpty else { throw LabError.timeout("stream ended before a whole header (\(received.count) bytes)") }
            received += chunk
            switch ProxyDecoder().decode(received) {
            case .needMoreData: continue
            case .invalid(let e): throw LabError.commandFailed("decode header", 0, "\(e) in \(received.prefix(64))")
            case .header(let h, let n): return (h, Array(received[n...]))
            }
        }
    }

    func shutdownWrite() { shutdown(fd, Int32(SHUT_WR)) }
}

/// Runs `body` on its own thread; `wait()` returns its result or rethrows its error.
final class Background<T> {
    private var result: Result<T, Error>?
    private let done = DispatchSemaphore(value: 0)

    init(_ body: @escaping () throws -> T) {
        let thread = Thread { [self] in
            self.result = Result { try body() }
            self.done.signal()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }

    func wait(timeout: Double = 60) throws -> T {
        guard done.wait(timeout: .now() + timeout) == .success else { throw LabError.timeout("background work") }
        return try result!.get()
    }
}

/// A deterministic byte pattern and its digest, for byte-exact transfers.
struct Pattern {
    static func block(seed: UInt8, size: Int = 1 << 16) -> [UInt8] {
        var x = UInt32(seed) &* 2_654_435_761 &+ 1
        return (0..<size).map { _ in
            x ^= x << 13
            x ^= x >> 17
            x ^= x << 5
            return UInt8(truncatingIfNeeded: x)
        }
    }
}

/// Checks that a stream is the repeated pattern block, chunk by chunk.
struct PatternChecker {
    let block: [UInt8]
    var offset = 0
    var mismatchAt: Int?

    init(seed: UInt8) { block = Pattern.block(seed: seed) }

    mutating func check(_ bytes: [UInt8]) {
        guard mismatchAt == nil else { return }
        var i = 0
        while i < bytes.count {
            let at = offset % block.count
            let n = min(block.count - at, bytes.count - i)
            let equal = bytes.withUnsafeBytes { b in
                block.withUnsafeBytes { p in memcmp(b.baseAddress! + i, p.baseAddress! + at, n) == 0 }
            }
            if !equal {
                mismatchAt = offset
                return
            }
            offset += n
            i += n
        }
    }
}

extension TCP {
    /// Sends `total` bytes of the pattern of `seed`.
    func sendPattern(seed: UInt8, total: Int) throws {
        let block = Pattern.block(seed: seed)
        var sent = 0
        while sent < total {
            let n = min(block.count, total - sent)
            try write(n == block.count ? block : Array(block[..<n]))
            sent += n
        }
    }

    /// Receives until end of stream, checking the pattern of `seed`; returns the count.
    func receivePattern(seed: UInt8, prefix: [UInt8] = []) throws -> (count: Int, intact: Bool) {
        var checker = PatternChecker(seed: seed)
        checker.check(prefix)
        while true {
            let chunk = try read(max: 1 << 18)
            if chunk.isEmpty { break }
            checker.check(chunk)
        }
        return (checker.offset, checker.mismatchAt == nil)
    }
}
