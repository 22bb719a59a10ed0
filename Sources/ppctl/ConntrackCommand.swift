import ArgumentParser
import Balancer
import Datapath
import DatapathABI
import Foundation

struct Conntrack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show tracked connections.", subcommands: [List.self], defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tracked connections: client, VIP, backend, SNAT address, state, header.")
        @OptionGroup var instance: InstanceOptions
        @Option(name: .shortAndLong, help: "table or json.") var output: OutputFormat = .table

        struct JSON: Encodable {
            let client: String, vip: String, backend: String, snat: String
            let state: [String], headerLength: Int, uniqueID: String?, ageSeconds: Double
        }

        func run() throws {
            let inst = try instance.instance()
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
            let now = UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
            let connections = try ppctl.run { Connection.all(in: try Maps(inst).conntrack, nowNanoseconds: now) }
            switch output {
            case .json:
                try printJSON(connections.map {
                    JSON(client: $0.client.description, vip: $0.vip.description, backend: $0.backend.description,
                         snat: $0.snat.description, state: $0.state, headerLength: $0.headerLength,
                         uniqueID: $0.uniqueID, ageSeconds: ($0.ageSeconds * 10).rounded() / 10)
                })
            case .table:
                print(table(["CLIENT", "VIP", "BACKEND", "SNAT", "STATE", "HDR", "UNIQUE-ID", "AGE"], connections.map {
                    [$0.client.description, $0.vip.description, $0.backend.description, $0.snat.description,
                     $0.state.joined(separator: ","), "\($0.headerLength)", $0.uniqueID ?? "-",
                     String(format: "%.0fs", $0.ageSeconds)]
                }))
            }
        }
    }
}

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show counters: packets, bytes, connections, headers injected, refusals.")
    @OptionGroup var instance: InstanceOptions
    @Option(name: .shortAndLong, help: "table or json.") var output: OutputFormat = .table

    func run() throws {
        let inst = try instance.instance()
        let (s, live) = try ppctl.run { () throws -> (ppctl_stats, Int) in
            let maps = try Maps(inst)
            let entries = maps.conntrack.entries()
            return (try maps.totals(), entries.filter { $0.value.dir == UInt8(PPCTL_DIR_ORIGINAL) }.count)
        }
        let rows: [(String, UInt64)] = [
            ("packets_to_backend", s.packets_to_backend), ("bytes_to_backend", s.bytes_to_backend),
            ("packets_to_client", s.packets_to_client), ("bytes_to_client", s.bytes_to_client),
            ("connections", s.connections), ("live_connections", UInt64(live)),
            ("headers_injected", s.headers_injected), ("headers_resent", s.headers_resent),
            ("data_split", s.data_split), ("tfo_trimmed", s.tfo_trimmed),
            ("refused_no_backend", s.refused_no_backend), ("refused_table_full", s.refused_table_full),
            ("dropped_no_conn", s.dropped_no_conn), ("passed_unparsed", s.passed_unparsed),
            ("conns_reused", s.conns_reused), ("gc_expired", s.gc_expired), ("fwd_errors", s.fwd_errors),
        ]
        switch output {
        case .json: try printJSON(Dictionary(uniqueKeysWithValues: rows))
        case .table: print(table(["COUNTER", "VALUE"], rows.map { [$0.0, "\($0.1)"] }))
        }
    }
}
