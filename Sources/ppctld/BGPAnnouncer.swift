import Balancer
import Dispatch
import Foundation
import Logging
import ProxyProtocol

/// Announces through bird2 the VIPs whose services can take connections
/// (docs/config.md, "BGP"): a VIP address is announced while at least one service
/// at that address has a backend `up`, and withdrawn when none has (all down,
/// draining or drained), when the file no longer declares it, and when ppctld
/// stops. It writes `BirdConfig.render` to `bgp.include` (a temporary file renamed
/// over it) and runs `birdc -s SOCKET configure`; a failure (bird not running yet,
/// a refused configuration) is logged once and retried every second.
///
/// Its state lives on its own serial queue: callers (the main queue) hand it the
/// wanted state and return; birdc never blocks health checks or reloads.
final class BGPAnnouncer {
    let source: String
    let logger: Logger
    let metrics: BGPMetrics
    private let queue = DispatchQueue(label: "ppctld.bgp")

    // MARK: State (on `queue`)

    private var config: BGPConfig?
    /// Every VIP address of the file, and those with a backend up.
    private var declared: Set<IPAddress> = []
    private var serving: Set<IPAddress> = []
    /// What bird accepted last: the text, its path and the VIPs in it.
    private var appliedText: String?
    private var appliedPath: String?
    private var announced: Set<IPAddress> = []
    private var lastError: String?
    private var retry: DispatchWorkItem?

    /// Longest a `birdc configure` may take.
    static let birdcTimeout = 5.0

    /// `source`: the configuration file, named in the include's first line.
    init(source: String, logger: Logger, metrics: BGPMetrics) {
        self.source = source
        self.logger = logger
        self.metrics = metrics
    }

    /// Takes the `bgp` section and the VIP addresses of a configuration just
    /// applied, with those serving now. A section removed withdraws everything
    /// once (the sessions stay, with nothing to announce) and then leaves the
    /// include alone.
    func configure(_ bgp: BGPConfig?, declared: Set<IPAddress>, serving: Set<IPAddress>) {
        queue.async { [self] in
            if bgp == nil, let old = config {
                // Withdraw with the old section, then stop managing the file.
                self.serving = []
                sync(old)
            }
            config = bgp
            self.declared = bgp == nil ? [] : declared
            self.serving = serving
            sync()
        }
    }

    /// Health changed: `serving` are the VIP addresses with a backend up.
    func update(serving: Set<IPAddress>) {
        queue.async { [self] in
            guard serving != self.serving else { return }
            self.serving = serving
            sync()
        }
    }

    /// ppctld stops: withdraws every VIP and waits (at most `birdcTimeout`) for bird
    /// to take the file. The BGP sessions stay up, with nothing announced.
    func withdrawAll(signal: String) {
        queue.sync {
            guard config != nil else { return }
            serving = []
            sync(reason: signal)
            config = nil
        }
    }

    // MARK: - Writing and telling bird (on `queue`)

    private func sync(_ override: BGPConfig? = nil, reason: String = "health") {
        retry?.cancel()
        retry = nil
        guard let bgp = override ?? config else {
            publish()
            return
        }
        let wanted = serving.intersection(declared)
        let text = BirdConfig.render(bgp, announcing: wanted, source: source)
        guard text != appliedText || bgp.include != appliedPath else { return }
        do {
            try write(text, to: bgp.include)
            try configureBird(bgp)
        } catch {
            let message = "\(error)"
            if message != lastError {
                logger.error(
                    "cannot announce through bird: \(message); retrying every second",
                    metadata: [
                        "event": "bgp", "socket": "\(bgp.birdSocket)", "include": "\(bgp.include)"
                    ])
            }
            lastError = message
            let item = DispatchWorkItem { [weak self] in self?.sync() }
            retry = item
            queue.asyncAfter(deadline: .now() + 1, execute: item)
            publish()
            return
        }
        if lastError != nil {
            logger.info("bird took the announcements", metadata: ["event": "bgp", "socket": "\(bgp.birdSocket)"])
            lastError = nil
        }
        let peers = bgp.peers.map { "\($0.address)" }.joined(separator: ",")
        for vip in wanted.subtracting(announced).sorted(by: { "\($0)" < "\($1)" }) {
            logger.info("VIP announced", metadata: ["event": "announce", "vip": "\(vip)", "peers": "\(peers)"])
        }
        for vip in announced.subtracting(wanted).sorted(by: { "\($0)" < "\($1)" }) {
            logger.info(
                "VIP withdrawn",
                metadata: [
                    "event": "withdraw", "vip": "\(vip)", "peers": "\(peers)",
                    "why": "\(declared.contains(vip) ? (reason == "health" ? "no backend up" : reason) : "no longer in the file")"
                ])
        }
        announced = wanted
        appliedText = text
        appliedPath = bgp.include
        publish()
    }

    private func publish() {
        var state: [String: Bool] = [:]
        for vip in declared { state[vip.description] = announced.contains(vip) }
        for vip in announced { state[vip.description] = true }
        metrics.set(state)
    }

    /// Writes `text` to a temporary file beside `path` (mode 0644) and renames it over `path`.
    private func write(_ text: String, to path: String) throws {
        let temporary = path + ".ppctld-tmp"
        try text.write(toFile: temporary, atomically: false, encoding: .utf8)
        chmod(temporary, 0o644)  // bird may run as another user (Debian's: `bird`)
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw BGPError.write(path, String(cString: strerror(e)))
        }
    }

    /// `birdc -s SOCKET configure`: bird reads bird.conf (and the include) again.
    /// birdc's exit status does not say whether bird took the file; its answer does
    /// ("Reconfigured", "Reconfiguration in progress" or "... queueing").
    private func configureBird(_ bgp: BGPConfig) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bgp.birdc)
        p.arguments = ["-s", bgp.birdSocket, "configure"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch { throw BGPError.birdc("cannot run \(bgp.birdc): \(error)") }
        let done = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var data = Data() }
        let box = Box()
        DispatchQueue.global().async {
            box.data = out.fileHandleForReading.readDataToEndOfFile()
            done.signal()
        }
        if done.wait(timeout: .now() + Self.birdcTimeout) == .timedOut {
            p.terminate()
            done.wait()
            throw BGPError.birdc("birdc did not answer within \(Self.birdcTimeout) s")
        }
        p.waitUntilExit()
        let answer = String(decoding: box.data, as: UTF8.self)
        let lines = answer.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard p.terminationStatus == 0, lines.contains(where: { $0.hasPrefix("Reconfigur") }) else {
            let summary = lines.filter { !$0.hasPrefix("BIRD ") }.joined(separator: "; ")
            throw BGPError.birdc("birdc -s \(bgp.birdSocket) configure: \(summary.isEmpty ? "exit \(p.terminationStatus)" : summary)")
        }
    }
}

/// Why an announcement did not reach bird.
enum BGPError: Error, CustomStringConvertible {
    /// The include could not be written: its path, the reason.
    case write(String, String)
    /// birdc failed or bird refused the configuration: what birdc said.
    case birdc(String)

    var description: String {
        switch self {
        case .write(let path, let why): return "cannot write \(path): \(why)"
        case .birdc(let what): return what
        }
    }
}

/// The announcement state for /metrics (`ppctl_vip_announced`), shared between the
/// announcer's queue and the metrics server's thread.
final class BGPMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var state: [String: Bool] = [:]

    func set(_ state: [String: Bool]) {
        lock.lock()
        self.state = state
        lock.unlock()
    }

    /// VIP address → announced.
    func snapshot() -> [String: Bool] {
        lock.lock()
        defer { lock.unlock() }
        return state
    }
}
