import ArgumentParser
import Datapath
import DatapathABI

/// `ppctl stats`: the datapath's counters.
struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show counters: packets, bytes, connections, headers injected, refusals.",
        discussion: """
            The datapath's counters summed over CPUs, and live_connections: the connections tracked \
            now. Every packet the datapath drops or passes untouched is counted under its reason: \
            dropped_*, refused_* (answered with a RST) and passed_*; fwd_errors is the sum of \
            dropped_rewrite_error, dropped_header_error, dropped_no_route and dropped_redirect_error. \
            The local_* counters are the socket path's (clients on this host, `attach --cgroup`).
            """)
    @ParentCommand var root: PPCtl
    @OptionGroup var format: OutputOptions

    func run() throws {
        let inst = try root.instance()
        let (s, sock, live) = try ppctl.run { () throws -> (ppctl_stats, ppctl_sock_stats?, Int) in
            let maps = try Maps(inst)
            return (try maps.totals(), try maps.socketTotals(), maps.liveConnections())
        }
        var rows: [(String, UInt64)] = [
            ("packets_to_backend", s.packets_to_backend), ("bytes_to_backend", s.bytes_to_backend),
            ("packets_to_client", s.packets_to_client), ("bytes_to_client", s.bytes_to_client),
            ("connections", s.connections), ("live_connections", UInt64(live)),
            ("headers_injected", s.headers_injected), ("headers_resent", s.headers_resent),
            ("data_split", s.data_split), ("tfo_trimmed", s.tfo_trimmed),
            ("refused_no_backend", s.refused_no_backend), ("refused_table_full", s.refused_table_full),
            ("refused_snat_exhausted", s.refused_snat_exhausted), ("resets_sent", s.resets_sent),
            ("dropped_no_conn", s.dropped_no_conn), ("dropped_out_of_window", s.dropped_out_of_window),
            ("ignored_rst", s.ignored_rst), ("passed_unparsed", s.passed_unparsed),
            ("conns_reused", s.conns_reused), ("gc_expired", s.gc_expired),
            // Named drop and pass reasons; fwd_errors is the sum of the four drops.
            ("dropped_rewrite_error", s.dropped_rewrite_error), ("dropped_header_error", s.dropped_header_error),
            ("dropped_no_route", s.dropped_no_route), ("dropped_redirect_error", s.dropped_redirect_error),
            ("fwd_errors", s.fwd_errors), ("passed_local_untracked", s.passed_local_untracked)
        ]
        // The socket path (local clients); its map is missing only in pins of an older ppctl.
        if let sock {
            rows += [
                ("local_connects", sock.connects), ("local_refused_no_backend", sock.refused_no_backend),
                ("local_headers_pushed", sock.headers_pushed), ("local_header_errors", sock.header_errors)
            ]
        }
        switch format.output {
        case .json: try printJSON(Dictionary(uniqueKeysWithValues: rows))
        case .table: print(table(["COUNTER", "VALUE"], rows.map { [$0.0, "\($0.1)"] }))
        }
    }
}
