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
        counter("connections", "Connections the datapath accepted.", s.connections)
        counter("headers_injected", "PROXY headers sent (first transmission).", s.headers_injected)
        counter("headers_resent", "PROXY headers sent again (not yet acknowledged).", s.headers_resent)
        let refusals = "SYNs refused with a RST, by reason."
        counter("refused", refusals, s.refused_no_backend, [("reason", "no_backend")])
        counter("refused", refusals, s.refused_table_full, [("reason", "table_full")])
        counter("refused", refusals, s.refused_snat_exhausted, [("reason", "snat_exhausted")])
        counter("bytes", "Bytes forwarded, by direction.", s.bytes_to_backend, [("direction", "to_backend")])
        counter("bytes", "Bytes forwarded, by direction.", s.bytes_to_client, [("direction", "to_client")])

        let entries = maps.conntrack.entries()
        gauge("conntrack_entries", "Entries in the conntrack table (two per connection).", entries.count)
        gauge("conntrack_capacity", "Entries the conntrack table holds.", maps.conntrack.capacity)
        var live: [UInt32: Int] = [:]
        for e in entries where e.value.dir == UInt8(PPCTL_DIR_ORIGINAL) { live[e.value.service_id, default: 0] += 1 }
        for v in services {
            let service = label(v)
            gauge("active_connections", "Connections tracked now, by service.", live[v.id] ?? 0, [("service", service)])
            for b in v.spec.backends {
                let labels = [("service", service), ("backend", b.endpoint.description)]
                let h = health.backend(service, b.endpoint.description)
                gauge("backend_up", "1 if the backend takes new connections (up), 0 if down or draining; 1 if unchecked.",
                      h.map { $0.up ? 1 : 0 } ?? 1, labels)
                counter("backend_transitions", "Health state changes of a backend since ppctld started.",
                        UInt64(h?.transitions ?? 0), labels)
            }
        }
        return r.emitToString() + health.registry.emitToString()
    }

    /// The `service` label: the name in ppctld's file, or the VIP:PORT of a service
    /// the file does not declare (added with `ppctl service add`).
    private func label(_ v: ServiceView) -> String {
        names.name(v.spec.vip) ?? v.spec.vip.description
    }
}
