import Balancer
import Datapath
import DatapathABI
import Prometheus

/// The Prometheus text of `GET /metrics`, read from the pinned maps when scraped:
/// the datapath's counters summed over CPUs, conntrack occupancy, live connections
/// per service and the backends of each service. Each scrape fills a new registry,
/// so counters are exactly the maps' values.
struct MetricsExporter: Sendable {
    let instance: Instance
    let names: ServiceNames
    let health: HealthMetrics
    let bgp: BGPMetrics

    /// The metrics, in the Prometheus text format. Throws if the maps cannot be opened.
    func render() throws -> String {
        let maps = try Maps(instance)
        let s = try maps.totals()
        let services = Controller(ServiceTables(maps)).services()
        let r = PrometheusCollectorRegistry()
        // ppctl_NAME_total and ppctl_NAME.
        func counter(_ name: String, _ help: String, _ value: UInt64, _ labels: [(String, String)] = []) {
            let d = MetricNameDescriptor(namespace: "ppctl", metricName: name, unitName: "total", helpText: help)
            r.makeCounter(descriptor: d, labels: labels).increment(by: Int64(truncatingIfNeeded: value))
        }
        func gauge(_ name: String, _ help: String, _ value: Int, _ labels: [(String, String)] = []) {
            let d = MetricNameDescriptor(namespace: "ppctl", metricName: name, unitName: "", helpText: help)
            r.makeGauge(descriptor: d, labels: labels).set(Int64(value))
        }
        counter("datapath_connections", "Connections the datapath accepted, all services.", s.connections)
        counter("datapath_bytes", "Bytes forwarded, all services, by direction.", s.bytes_to_backend, [("direction", "to_backend")])
        counter("datapath_bytes", "Bytes forwarded, all services, by direction.", s.bytes_to_client, [("direction", "to_client")])
        let refusals = "SYNs refused with a RST, by service and reason."
        let drops = "Packets of ppctl's connections and services the datapath dropped, by reason."
        for (reason, value) in [
            ("no_conn", s.dropped_no_conn), ("out_of_window", s.dropped_out_of_window),
            ("rewrite_error", s.dropped_rewrite_error), ("header_error", s.dropped_header_error),
            ("no_route", s.dropped_no_route), ("redirect_error", s.dropped_redirect_error)
        ] {
            counter("datapath_dropped", drops, value, [("reason", reason)])
        }
        let passes = "Packets the datapath passed to the stack untouched, by reason."
        for (reason, value) in [("unparsed", s.passed_unparsed), ("local_untracked", s.passed_local_untracked)] {
            counter("datapath_passed", passes, value, [("reason", reason)])
        }

        let entries = maps.conntrack.entries()
        gauge("conntrack_entries", "Entries in the conntrack table (two per connection).", entries.count)
        gauge("conntrack_capacity", "Entries the conntrack table holds.", maps.conntrack.capacity)
        // Live connections and what they carried so far, by backend id; finished
        // connections' traffic is in the backend's counters.
        var live: [UInt32: Int] = [:], toBackend: [UInt32: UInt64] = [:], toClient: [UInt32: UInt64] = [:]
        for e in entries {
            if e.value.dir == UInt8(PPCTL_DIR_ORIGINAL) {
                live[e.value.backend_id, default: 0] += 1
                toBackend[e.value.backend_id, default: 0] &+= e.value.bytes
            } else {
                toClient[e.value.backend_id, default: 0] &+= e.value.bytes
            }
        }
        for v in services {
            let service = label(v)
            let ss = (try? maps.serviceStats.sum(at: v.id)) ?? ppctl_service_stats()
            counter("service_connections", "Connections the datapath accepted, by service.", ss.connections, [("service", service)])
            counter("headers_injected", "PROXY headers sent (first transmission), by service.", ss.headers_injected, [("service", service)])
            counter("headers_resent", "PROXY headers sent again, by service.", ss.headers_resent, [("service", service)])
            counter("refused", refusals, ss.refused_no_backend, [("service", service), ("reason", "no_backend")])
            counter("refused", refusals, ss.refused_table_full, [("service", service), ("reason", "table_full")])
            counter("refused", refusals, ss.refused_snat_exhausted, [("service", service), ("reason", "snat_exhausted")])
            for (index, b) in v.spec.backends.enumerated() {
                let id = v.id << 8 | UInt32(index), labels = [("service", service), ("backend", b.endpoint.description)]
                let bs = (try? maps.backendStats.sum(at: id)) ?? ppctl_backend_stats()
                counter("connections", "Connections given to the backend.", bs.connections, labels)
                gauge("active_connections", "Connections tracked now, by backend.", live[id] ?? 0, labels)
                counter(
                    "bytes", "Bytes forwarded, by backend and direction.", bs.bytes_to_backend &+ (toBackend[id] ?? 0),
                    labels + [("direction", "to_backend")])
                counter(
                    "bytes", "Bytes forwarded, by backend and direction.", bs.bytes_to_client &+ (toClient[id] ?? 0),
                    labels + [("direction", "to_client")])
                let h = health.backend(service, b.endpoint.description)
                gauge(
                    "backend_up", "1 if the backend takes new connections (up), 0 if down or draining; 1 if unchecked.",
                    h.map { $0.up ? 1 : 0 } ?? 1, labels)
                counter(
                    "backend_transitions", "Health state changes of a backend since ppctld started.",
                    UInt64(h?.transitions ?? 0), labels)
            }
        }
        for (vip, announced) in bgp.snapshot().sorted(by: { $0.key < $1.key }) {
            gauge(
                "vip_announced", "1 if bird took ppctld's announcement of the VIP (a service there has a backend up), 0 if withdrawn.",
                announced ? 1 : 0, [("vip", vip)])
        }
        return r.emitToString() + health.registry.emitToString()
    }

    /// The `service` label: the name in ppctld's file, or the VIP:PORT of a service
    /// the file does not declare (added with `ppctl service add`).
    private func label(_ v: ServiceView) -> String {
        names.name(v.spec.vip) ?? v.spec.vip.description
    }
}
