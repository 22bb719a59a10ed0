import Balancer
import Foundation

/// One health check of one backend: a TCP connection from the balancer's own
/// address (the kernel picks the source address of the route and a port of
/// ip_local_port_range, which the datapath never uses for SNAT on that address),
/// the check's PROXY header first, then for `http` a `GET` whose status line is
/// read. Blocking, with one deadline for all of it: run it off the main queue.
enum Probe {
    /// What a check found: passed or not, a word for people (`ok`, `refused`,
    /// `timeout`, `status 503`, ...) and how long it took.
    struct Result: Equatable {
        var ok: Bool
        var detail: String
        var seconds: Double
    }

    static func run(_ check: HealthCheck, _ backend: Endpoint) -> Result {
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(check.timeout * 1e9)
        let (ok, detail) = attempt(check, backend, deadline: deadline)
        return Result(ok: ok, detail: detail, seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    private static func attempt(_ check: HealthCheck, _ backend: Endpoint, deadline: UInt64) -> (Bool, String) {
        let v6 = backend.address.family == 6
        let fd = socket(
            v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (false, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var storage = sockaddr_storage()
        var length: socklen_t
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = backend.port.bigEndian
            inet_pton(AF_INET6, backend.address.description, &a.sin6_addr)
            length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        } else {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = backend.port.bigEndian
            inet_pton(AF_INET, backend.address.description, &a.sin_addr)
            length = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeBytes(of: a) { src in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: src) } }
        }
        let rc = withUnsafePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) } }
        if rc != 0 && errno != EINPROGRESS { return (false, word(errno)) }
        guard wait(fd, Int16(POLLOUT), deadline) else { return (false, "timeout") }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
        if error != 0 { return (false, word(error)) }

        var request = check.header
        if check.kind == .http {
            request += Array("GET \(check.path) HTTP/1.0\r\nHost: \(backend)\r\nUser-Agent: ppctld\r\nConnection: close\r\n\r\n".utf8)
        }
        if !request.isEmpty {
            let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent != request.count { return (false, sent < 0 ? word(errno) : "short write") }
        }
        guard check.kind == .http else { return (true, "ok") }

        // The status line: `HTTP/1.x NNN ...\r\n`.
        var answer: [UInt8] = []
        while !answer.contains(0x0A) && answer.count < 4096 {
            guard wait(fd, Int16(POLLIN), deadline) else { return (false, "timeout") }
            var chunk = [UInt8](repeating: 0, count: 1024)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if n < 0 { return (false, word(errno)) }
            if n == 0 { return (false, answer.isEmpty ? "closed" : "bad answer") }
            answer += chunk[0..<n]
        }
        let line = String(decoding: answer.prefix { $0 != 0x0D && $0 != 0x0A }, as: UTF8.self)
        let fields = line.split(separator: " ")
        guard fields.count >= 2, fields[0].hasPrefix("HTTP/"), let status = Int(fields[1]) else { return (false, "bad answer") }
        return status == check.status ? (true, "ok") : (false, "status \(status)")
    }

    /// Waits until `fd` is ready for `events` or the deadline (uptime ns) passes.
    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: UInt64) -> Bool {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            guard now < deadline else { return false }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&p, 1, Int32(max(1, (deadline - now) / 1_000_000)))
            if n > 0 { return true }
            if n < 0 && errno != EINTR { return false }
        }
    }

    /// A word for an errno of connect or send.
    private static func word(_ e: Int32) -> String {
        switch e {
        case ECONNREFUSED: return "refused"
        case ETIMEDOUT: return "timeout"
        case ECONNRESET: return "reset"
        case EHOSTUNREACH, ENETUNREACH: return "unreachable"
        default: return String(cString: strerror(e))
        }
    }
}
