import ArgumentParser
import Balancer
import Datapath
import DatapathABI
import Foundation

/// `ppctl conntrack list`: the tracked connections.
struct Conntrack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show tracked connections.", subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tracked connections: client, VIP, backend, SNAT address, state, header.")
        @ParentCommand var root: PPCtl
        @OptionGroup var format: OutputOptions

        /// One connection in `-o json` (docs/cli.md).
        struct JSON: Encodable {
            let client: String, vip: String, backend: String, snat: String
            let state: [String], headerLength: Int, uniqueID: String?, ageSeconds: Double

            enum CodingKeys: String, CodingKey {
                case client, vip, backend, snat, state, headerLength, uniqueID, ageSeconds
            }

            /// Every key always present: `uniqueID` is null when the service sends none.
            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(client, forKey: .client)
                try c.encode(vip, forKey: .vip)
                try c.encode(backend, forKey: .backend)
                try c.encode(snat, forKey: .snat)
                try c.encode(state, forKey: .state)
                try c.encode(headerLength, forKey: .headerLength)
                try c.encode(uniqueID, forKey: .uniqueID)
                try c.encode(ageSeconds, forKey: .ageSeconds)
            }
        }

        func run() throws {
            let inst = try root.instance()
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
            let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
            let connections = try ppctl.run { Connection.all(in: try Maps(inst).conntrack, nowNanoseconds: now) }
            switch format.output {
            case .json:
                try printJSON(
                    connections.map {
                        JSON(
                            client: $0.client.description, vip: $0.vip.description, backend: $0.backend.description,
                            snat: $0.snat.description, state: $0.state, headerLength: $0.headerLength,
                            uniqueID: $0.uniqueID, ageSeconds: ($0.ageSeconds * 10).rounded() / 10)
                    })
            case .table:
                print(
                    table(
                        ["CLIENT", "VIP", "BACKEND", "SNAT", "STATE", "HDR", "UNIQUE-ID", "AGE"],
                        connections.map {
                            [
                                $0.client.description, $0.vip.description, $0.backend.description, $0.snat.description,
                                $0.state.joined(separator: ","), "\($0.headerLength)", $0.uniqueID ?? "-",
                                String(format: "%.0fs", $0.ageSeconds)
                            ]
                        }))
            }
        }
    }
}
