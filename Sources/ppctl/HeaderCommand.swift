import ArgumentParser
import Balancer
import Foundation
import ProxyProtocol

struct Header: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode, encode, receive and send PROXY protocol headers by hand (no root needed).",
        subcommands: [Decode.self, Encode.self, Listen.self, Probe.self])
}

// MARK: - Printing a header

struct HeaderJSON: Encodable {
    /// One TLV: its bytes as hex, as text when printable, and the typed value of the
    /// cloud TLVs (each key absent from the JSON when it has no value).
    struct TLV: Encodable {
        let type: UInt8, name: String, hex: String, text: String?
        /// AWS (0xEA): the VPC endpoint id.
        var vpcEndpointID: String?
        /// Azure (0xEE): the private endpoint LINKID.
        var azureLinkID: UInt32?
        /// GCP (0xE0): the Private Service Connect connection id.
        var pscConnectionID: UInt64?

        /// The typed value as the table shows it, if the TLV has one.
        var typed: String? {
            if let vpcEndpointID { return "VPC endpoint \"\(vpcEndpointID)\"" }
            if let azureLinkID { return "link id \(azureLinkID)" }
            if let pscConnectionID { return "PSC connection id \(pscConnectionID)" }
            return nil
        }
    }
    let version: Int, command: String, family: String
    let source: String?, sourcePort: UInt16?, destination: String?, destinationPort: UInt16?
    let tlvs: [TLV], length: Int, trailingBytes: Int

    init(_ h: ProxyHeader, length: Int, trailing: Int) {
        version = Int(h.version.rawValue)
        command = h.command == .local ? "LOCAL" : "PROXY"
        self.length = length
        trailingBytes = trailing
        switch h.addresses {
        case .unspecified:
            family = "UNSPEC"
            source = nil
            sourcePort = nil
            destination = nil
            destinationPort = nil
        case .ipv4(let s, let sp, let d, let dp, let t):
            family = t == .stream ? "TCP4" : "UDP4"
            source = s.description
            sourcePort = sp
            destination = d.description
            destinationPort = dp
        case .ipv6(let s, let sp, let d, let dp, let t):
            family = t == .stream ? "TCP6" : "UDP6"
            source = s.description
            sourcePort = sp
            destination = d.description
            destinationPort = dp
        case .unix(let s, let d, let t):
            family = t == .stream ? "UNIX_STREAM" : "UNIX_DGRAM"
            source = String(decoding: s, as: UTF8.self)
            sourcePort = nil
            destination = String(decoding: d, as: UTF8.self)
            destinationPort = nil
        }
        tlvs = h.tlvs.map { t in
            let printable = !t.value.isEmpty && t.value.allSatisfy { $0 >= 0x20 && $0 < 0x7f }
            return TLV(
                type: t.type, name: t.name, hex: hexString(t.value),
                text: printable ? String(decoding: t.value, as: UTF8.self) : nil,
                vpcEndpointID: t.awsVPCEndpointID, azureLinkID: t.azureLinkID,
                pscConnectionID: t.gcpPSCConnectionID)
        }
    }

    var table: String {
        var rows: [[String]] = [["version", "\(version)"], ["command", command], ["family", family]]
        if let source { rows.append(["source", sourcePort.map { "\(source) port \($0)" } ?? source]) }
        if let destination { rows.append(["destination", destinationPort.map { "\(destination) port \($0)" } ?? destination]) }
        for t in tlvs {
            rows.append([
                "tlv 0x\(String(format: "%02X", t.type)) \(t.name)",
                t.typed.map { "\($0) (\(t.hex))" } ?? t.text.map { "\"\($0)\"" } ?? t.hex
            ])
        }
        rows.append(["length", "\(length) bytes"])
        if trailingBytes > 0 { rows.append(["after header", "\(trailingBytes) bytes"]) }
        return ppctl.table(["FIELD", "VALUE"], rows)
    }
}

func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

// MARK: - decode

extension Header {
    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode a header given in hex, in a file, or on stdin.",
            discussion: "Example: ppctl header decode 0d0a0d0a000d0a515549540a2111000cc6120102c612000aabc80050")

        @ParentCommand var root: PPCtl

        @Argument(help: ArgumentHelp("The header in hex (spaces and colons allowed).", valueName: "hex"))
        var hex: [String] = []

        @Option(help: "Read raw bytes from this file instead.")
        var file: String?

        @Option(name: .shortAndLong, help: "table or json.")
        var output: OutputFormat = .table

        func validate() throws {
            try root.refuseNetns("header decode")
            if file != nil && !hex.isEmpty { throw ValidationError("give either hex or --file, not both") }
        }

        func run() throws {
            let input: [UInt8]
            if !hex.isEmpty {
                let digits = hex.joined().filter { !$0.isWhitespace && $0 != ":" }
                guard digits.count % 2 == 0, let b = bytesFromHex(digits) else {
                    throw ValidationError("'\(hex.joined(separator: " "))' is not an even number of hex digits")
                }
                input = b
            } else if let file {
                guard let data = FileManager.default.contents(atPath: file) else {
                    printError("cannot read \(file)")
                    throw ExitCode(1)
                }
                input = Array(data)
            } else {
                input = Array(FileHandle.standardInput.readDataToEndOfFile())
            }
            var config = ProxyDecoder.Configuration()
            config.maxHeaderLength = 65551
            config.maxTLVValueLength = 65535
            switch ProxyDecoder(configuration: config).decode(input) {
            case .needMoreData(let n):
                printError("truncated header: need at least \(n) more byte\(n == 1 ? "" : "s")")
                throw ExitCode(1)
            case .invalid(let e):
                printError("invalid header: \(e)")
                throw ExitCode(1)
            case .header(let h, let consumed):
                let view = HeaderJSON(h, length: consumed, trailing: input.count - consumed)
                switch output {
                case .json: try printJSON(view)
                case .table: print(view.table)
                }
            }
        }
    }
}

func bytesFromHex(_ digits: String) -> [UInt8]? {
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        guard let b = UInt8(digits[i..<j], radix: 16) else { return nil }
        out.append(b)
        i = j
    }
    return out
}

// MARK: - encode

extension Header {
    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Build a header, for testing a backend by hand.",
            discussion: """
                Example: ppctl header encode --source 198.18.1.2:4000 --destination 198.18.0.10:80 | \
                cat - request.txt | nc 198.18.2.2 8080
                """)

        enum Raw: String, ExpressibleByArgument { case raw, hex }

        @ParentCommand var root: PPCtl
        @Option(name: .customLong("proxy-version"), help: "1 or 2.") var proxyVersion: Int = 2
        @Flag(help: "A LOCAL header (v2) or UNKNOWN (v1): no addresses.") var local = false
        @Option(help: ArgumentHelp("Client address.", valueName: "IP:PORT"), transform: Parse.endpoint) var source: Endpoint?
        @Option(help: ArgumentHelp("Address the client connected to.", valueName: "IP:PORT"), transform: Parse.endpoint)
        var destination: Endpoint?
        @Flag(help: "UDP instead of TCP (v2).") var udp = false
        @Option(
            name: .customLong("tlv"),
            help: ArgumentHelp("Custom TLV 0xE0...0xEF, TYPE=text or TYPE=hex:..; repeatable.", valueName: "TYPE=VALUE"),
            transform: Parse.tlv)
        var tlvs: [ProxyTLV] = []
        @Option(help: "AUTHORITY TLV (host name).") var authority: String?
        @Option(help: "ALPN TLV.") var alpn: String?
        @Option(help: "UNIQUE_ID TLV (text, at most 128 bytes).") var uniqueId: String?
        @Option(help: "AWS VPC endpoint id TLV.") var awsVpceId: String?
        @Option(help: "Azure LINKID TLV.") var azureLinkId: UInt32?
        @Option(help: "GCP PSC connection id TLV.") var gcpPscId: UInt64?
        @Flag(help: "Append a CRC32C TLV (v2).") var crc32c = false
        @Option(name: .shortAndLong, help: "raw (bytes, default) or hex.") var output: Raw = .raw

        func header() throws -> ProxyHeader {
            guard proxyVersion == 1 || proxyVersion == 2 else { throw ValidationError("--proxy-version must be 1 or 2") }
            var addresses = ProxyHeader.Addresses.unspecified
            if !local {
                guard let s = source, let d = destination else { throw ValidationError("give --source and --destination, or --local") }
                let t: ProxyHeader.Transport = udp ? .datagram : .stream
                switch (s.address, d.address) {
                case (.v4(let a), .v4(let b)):
                    addresses = .ipv4(source: a, sourcePort: s.port, destination: b, destinationPort: d.port, transport: t)
                case (.v6(let a), .v6(let b)):
                    addresses = .ipv6(source: a, sourcePort: s.port, destination: b, destinationPort: d.port, transport: t)
                default:
                    throw ValidationError("--source and --destination must be of the same family")
                }
            }
            var list = tlvs
            if let authority { list.append(.authority(authority)) }
            if let alpn { list.append(.alpn(alpn)) }
            if let uniqueId {
                guard uniqueId.utf8.count <= 128 else { throw ValidationError("--unique-id is longer than 128 bytes") }
                list.append(.uniqueID(Array(uniqueId.utf8)))
            }
            if let awsVpceId { list.append(.awsVPCEndpointID(awsVpceId)) }
            if let azureLinkId { list.append(.azureLinkID(azureLinkId)) }
            if let gcpPscId { list.append(.gcpPSCConnectionID(gcpPscId)) }
            if proxyVersion == 1 && (!list.isEmpty || crc32c || udp) {
                throw ValidationError("v1 headers carry no TLVs, CRC or UDP")
            }
            return ProxyHeader(
                version: proxyVersion == 1 ? .v1 : .v2, command: local ? .local : .proxy,
                addresses: addresses, tlvs: list)
        }

        func validate() throws {
            try root.refuseNetns("header encode")
            _ = try header()
        }

        func run() throws {
            let bytes = try ppctl.run { try header().encoded(crc32c: crc32c) }
            switch output {
            case .raw: FileHandle.standardOutput.write(Data(bytes))
            case .hex: print(hexString(bytes))
            }
        }
    }
}
