import ArgumentParser
import Balancer
import Datapath
import Foundation
import ProxyProtocol

/// `ppctl service add|apply|delete|list`.
struct Service: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add, delete and list virtual services.",
        subcommands: [Add.self, Apply.self, Delete.self, List.self])
}

extension Service {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a service: VIP:PORT balanced over backends.",
            discussion: """
                Example: ppctl service add 198.18.0.10:80 --proxyv2 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080,weight=2
                IPv6: ppctl service add [2001:2::10]:80 --proxy v2 --backend [2001:2:0:2::2]:8080
                """)

        @ParentCommand var root: PPCtl

        @Argument(
            help: ArgumentHelp("The virtual address and port clients connect to.", valueName: "VIP:PORT"),
            transform: Parse.endpoint)
        var vip: Endpoint

        @Option(
            name: .customLong("backend"),
            help: ArgumentHelp(
                "A backend, IP:PORT[,weight=N] (weight 1...10000, default 1); at least one, at most 256.",
                valueName: "IP:PORT[,weight=N]"), transform: Parse.backend)
        var backends: [Backend]

        @Option(help: ArgumentHelp("Write a PROXY header of this version towards the backends (give it once).", valueName: "v1|v2"))
        var proxy: [ProxyMode] = []

        @Flag(help: "Short for --proxy v2 (give it once).")
        var proxyv2: Int

        @Option(
            help: ArgumentHelp(
                "SNAT pool: source addresses towards the backends, e.g. 198.18.2.10,198.18.2.20-198.18.2.23 (at most 16; default: attach's --snat, else the egress interface's address); backends must route them back to the balancer.",
                valueName: "IP[-IP][,...]"), transform: Parse.snatPool)
        var snat: [IPAddress]?

        @Option(
            name: .customLong("tlv"),
            help: ArgumentHelp(
                "A custom TLV on every v2 header, TYPE=VALUE with TYPE in 0xE0...0xEF and VALUE text or hex:..; repeatable.",
                valueName: "0xE5=tenant-42"), transform: Parse.tlv)
        var tlvs: [ProxyTLV] = []

        @Option(help: "AWS TLV (0xEA): the VPC endpoint id.")
        var awsVpceId: String?

        @Option(help: "Azure TLV (0xEE): the private endpoint LINKID (u32).")
        var azureLinkId: UInt32?

        @Option(help: "GCP TLV (0xE0): the PSC connection id (u64).")
        var gcpPscId: UInt64?

        @Flag(help: "Add a UNIQUE_ID TLV, different for every connection (v2).")
        var uniqueId = false

        @Flag(help: "Add a CRC32C TLV computed by the kernel over each header (v2).")
        var crc32c = false

        @Flag(
            help: ArgumentHelp(
                "Records that the backends speak first (SMTP, IMAP...); changes nothing: every header service serves such backends.",
                discussion:
                    "Kept so that scripts and ppctld files that give it still work. Local clients get the header at tc egress where `attach --iface` covers the way to the backends, else in front of their first send."
            ))
        var serverFirst = false

        @Option(
            help: ArgumentHelp(
                "The size of the service's Maglev table, a prime up to 131071 (default: from the number of backends, 1009 for 1, 16001 for 9-16: docs/datapath.md).",
                discussion:
                    "A fixed size does not change when backends are added or removed, so the one-off remap of crossing a size step never happens.",
                valueName: "PRIME"))
        var tableSize: Int?

        /// The parsed options as one value.
        var arguments: ServiceArguments {
            ServiceArguments(
                vip: vip, backends: backends, proxy: proxy, proxyv2: proxyv2, snat: snat, tlvs: tlvs,
                awsVpceId: awsVpceId, azureLinkId: azureLinkId, gcpPscId: gcpPscId,
                uniqueId: uniqueId, crc32c: crc32c, serverFirst: serverFirst, tableSize: tableSize)
        }

        func validate() throws { _ = try arguments.spec() }

        func run() throws {
            let spec = try arguments.spec()
            let inst = try root.instance()
            try ppctl.run {
                try inst.withLock(needsPins: true) { try Controller(opening: inst).addService(spec) }
            }
            print("added \(spec.vip) (\(spec.backends.count) backend\(spec.backends.count == 1 ? "" : "s"))")
            if spec.maxHeaderLength > 107 {
                printWarning(
                    "headers of this service can reach \(spec.maxHeaderLength) bytes; nginx 1.22 rejects v2 headers over 107 bytes")
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a service (its established connections keep flowing until they end).")

        @ParentCommand var root: PPCtl

        @Argument(help: ArgumentHelp("The service's VIP and port.", valueName: "VIP:PORT"), transform: Parse.endpoint)
        var endpoint: Endpoint

        func run() throws {
            let inst = try root.instance()
            let owner = try ppctl.run {
                try inst.withLock(needsPins: true) { () throws -> ServiceOwner? in
                    let controller = try Controller(opening: inst)
                    let owner = controller.service(endpoint)?.owner
                    try controller.deleteService(endpoint)
                    return owner
                }
            }
            print("deleted \(endpoint)")
            if owner == .ppctld {
                printWarning("\(endpoint) was ppctld's: its next reload adds it back unless it is removed from ppctld's file")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List services and their backends.")

        @ParentCommand var root: PPCtl
        @OptionGroup var format: OutputOptions

        func run() throws {
            let inst = try root.instance()
            // Under the lock, as every change: never a change seen half done.
            let views = try ppctl.run { try inst.withLock(needsPins: true) { try Controller(opening: inst).services() } }
            switch format.output {
            case .json:
                try printJSON(views.map(ServiceJSON.init))
            case .table:
                print(
                    table(
                        ["VIP", "OWNER", "PROXY", "SNAT", "TABLE", "BACKENDS"],
                        views.map { v in
                            [
                                v.spec.vip.description, v.owner.description, v.spec.proxy.rawValue + flagsText(v.spec),
                                v.spec.snat.isEmpty ? "-" : v.spec.snat.map(\.description).joined(separator: ","),
                                "\(v.spec.maglevSize)" + (v.spec.tableSize == nil ? "" : " (fixed)"),
                                v.spec.backends.map { "\($0.endpoint)" + ($0.weight == 1 ? "" : ",weight=\($0.weight)") }
                                    .joined(separator: " ")
                            ]
                        }))
            }
        }

        func flagsText(_ s: ServiceSpec) -> String {
            var parts: [String] = []
            if !s.tlvs.isEmpty { parts.append("\(s.tlvs.count) tlv") }
            if s.uniqueID { parts.append("unique-id") }
            if s.crc32c { parts.append("crc32c") }
            if s.serverFirst { parts.append("server-first") }
            return parts.isEmpty ? "" : " (" + parts.joined(separator: ",") + ")"
        }
    }
}
