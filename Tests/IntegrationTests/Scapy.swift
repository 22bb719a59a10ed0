import Datapath
import DatapathABI
import Foundation

// MARK: - Hand-made TCP segments (scapy) and the balancer's view of a connection

extension Lab {
    /// An address in the client's subnet that no namespace owns: a scapy "host" can use
    /// it without the client's kernel answering its segments with resets. The balancer
    /// reaches it through a permanent neighbour entry (`addRawClient()`); what comes
    /// back for it is seen by scapy on c0 and then dropped by the client's kernel
    /// (forwarding is off there), silently.
    static let rawClientAddress = "198.18.1.3"

    /// Lets the balancer send to `rawClientAddress` (a permanent neighbour entry for c0's MAC).
    func addRawClient() throws {
        let mac = try exec(client, ["cat", "/sys/class/net/c0/address"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try exec(balancer, ["ip", "neigh", "replace", Lab.rawClientAddress, "lladdr", mac, "dev", "l0", "nud", "permanent"])
    }

    /// Runs a Python program with scapy (Debian's python3-scapy, hence /usr/bin/python3)
    /// in the client or backend namespace, and returns its output. The program finds
    /// ready: scapy's `IP`, `TCP`, `Raw`; `send(packet)`, which frames an IP packet
    /// for the namespace's one link (c0 or b0) towards the balancer and sends it with
    /// AF_PACKET; and `watch(host, port)`/`expect(what, condition)` to wait for
    /// segments coming in to host:port. With `check`, a program that fails
    /// (`sys.exit("why")`) throws `LabError.commandFailed` with its output.
    @discardableResult
    func scapy(in ns: String, check: Bool = true, _ program: String) throws -> Result {
        let (iface, gateway) = ns == client ? ("c0", "l0") : ("b0", "l1")
        let mac = try exec(balancer, ["cat", "/sys/class/net/\(gateway)/address"]).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return try exec(ns, ["/usr/bin/python3", "-c", Lab.scapyPrelude + program, iface, mac], check: check)
    }

    private static let scapyPrelude = #"""
        import sys, threading, time
        from scapy.all import AsyncSniffer, Ether, IP, Raw, TCP, conf, sendp
        conf.verb = 0
        IFACE, GATEWAY = sys.argv[1], sys.argv[2]

        def send(packet):
            sendp(Ether(dst=GATEWAY) / packet, iface=IFACE, verbose=False)

        _seen = []

        def watch(host, port):
            """Collects the TCP segments to host:port that arrive on IFACE from now on."""
            ready = threading.Event()
            AsyncSniffer(iface=IFACE, store=False, started_callback=ready.set,
                         lfilter=lambda p: TCP in p and p[IP].dst == host and p[TCP].dport == port,
                         prn=_seen.append).start()
            ready.wait(5)

        def expect(what, condition, timeout=3):
            """The first watched segment (its TCP layer) that satisfies `condition`."""
            end = time.time() + timeout
            while time.time() < end:
                for p in list(_seen):
                    if condition(p[TCP]):
                        _seen.remove(p)
                        return p[TCP]
                time.sleep(0.01)
            sys.exit("scapy: %s did not come within %g s" % (what, timeout))

        def payload(t):
            return t[Raw].load if Raw in t else b""

        """#

    // MARK: - Conntrack

    /// The balancer's connections, as `ppctl conntrack list -o json` gives them.
    func conntrack() throws -> [TrackedConnection] {
        try JSONDecoder().decode([TrackedConnection].self, from: Data(try ppctl(["conntrack", "list", "-o", "json"]).stdout.utf8))
    }

    /// Waits (up to 5 s) until the balancer tracks a connection from `client`
    /// ("address:port"), or any connection if nil; returns it.
    func waitForConnection(from client: String? = nil) throws -> TrackedConnection {
        for _ in 0..<100 {
            if let c = try conntrack().first(where: { client == nil || $0.client == client }) { return c }
            usleep(50_000)
        }
        throw LabError.timeout("a tracked connection from \(client ?? "anyone")")
    }

    /// The connection of `client` as the balancer has it now (nil once it is gone).
    func connection(from client: String) throws -> TrackedConnection? {
        try conntrack().first { $0.client == client }
    }

    /// The initial sequence number of the client of a tracked connection, read from
    /// the conntrack map itself (`conntrack list` does not show it).
    func clientISN(of c: TrackedConnection) throws -> UInt32 {
        let map = try BPFMap<ppctl_ct_key, ppctl_ct_entry>(pinnedAt: instanceDirectory + "/" + Maps.Name.conntrack.rawValue)
        guard
            let e = map.entries().first(where: {
                $0.value.dir == UInt8(PPCTL_DIR_ORIGINAL) && UInt16(bigEndian: $0.key.sport) == c.clientPort
            })
        else { throw LabError.timeout("the conntrack entry of \(c.client)") }
        return e.value.client_isn
    }
}

/// One connection of `ppctl conntrack list -o json`.
struct TrackedConnection: Decodable {
    let client: String, vip: String, backend: String, snat: String
    let state: [String]
    let headerLength: Int

    var clientPort: UInt16 { UInt16(client.split(separator: ":").last!)! }
    var snatAddress: String { String(snat.split(separator: ":").first!) }
    var snatPort: UInt16 { UInt16(snat.split(separator: ":").last!)! }
}
