import Foundation

// MARK: - Sockets in lab namespaces, the short way

extension Lab {
    /// A socket listening on host:port in namespace `ns` (IPv6 if host has a ':').
    func listen(in ns: String, on host: String, _ port: UInt16) throws -> TCP {
        try TCP.listen(self, in: ns, on: host, port)
    }

    /// A socket in namespace `ns` connected to host:port; reads and writes on it
    /// time out after `timeout` seconds.
    func connect(from ns: String, to host: String, _ port: UInt16, timeout: Int = 20) throws -> TCP {
        try TCP.connect(self, from: ns, to: host, port, timeout: timeout)
    }

    /// Waits (up to 5 s) until something listens on TCP `port` in namespace `ns`:
    /// for servers the lab starts as processes (nginx, HAProxy).
    func waitForListener(_ ns: String, _ port: UInt16) throws {
        for _ in 0..<50 {
            if try exec(ns, ["ss", "-Hltn", "sport = :\(port)"]).stdout.contains("LISTEN") { return }
            usleep(100_000)
        }
        throw LabError.timeout("listener on :\(port) in \(ns)")
    }
}

extension TCP {
    /// Reads until the peer closes (or `limit` bytes); throws on a read timeout.
    func readAll(limit: Int = 1 << 24) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < limit {
            let chunk = try read(max: min(1 << 16, limit - out.count))
            if chunk.isEmpty { break }
            out += chunk
        }
        return out
    }

    /// True if bytes (or the end of the stream) arrive within `seconds`.
    func isReadable(within seconds: Double) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, Int32(seconds * 1000)) == 1
    }
}
