import ArgumentParser
import Balancer
import ProxyProtocol

/// The values of ppctl's command lines, each parsed once, where ArgumentParser reads
/// it. Endpoints, backends, SNAT pools and TLVs go through a throwing transform
/// (`@Argument(transform: Parse.endpoint)`) rather than `ExpressibleByArgument`,
/// whose failable `init?(argument:)` cannot say what is wrong: ArgumentParser
/// reports a transform's error as "The value 'X' is invalid for '<NAME>': REASON"
/// (exit 64). The PROXY mode, a closed set of words, is `ExpressibleByArgument`.
enum Parse {
    /// `IP:PORT` or `[IPv6]:PORT` (`Endpoint(parsing:)`).
    static func endpoint(_ text: String) throws -> Endpoint {
        try reasoned { () throws(BalancerError) in try Endpoint(parsing: text) }
    }

    /// `IP:PORT[,weight=N]` (`Backend(parsing:)`).
    static func backend(_ text: String) throws -> Backend {
        try reasoned { () throws(BalancerError) in try Backend(parsing: text) }
    }

    /// `IP[-IP][,...]`: a SNAT pool, its addresses checked (`SNATPool`).
    static func snatPool(_ text: String) throws -> [IPAddress] {
        try reasoned { () throws(BalancerError) -> [IPAddress] in
            let pool = try SNATPool.parse(text)
            try SNATPool.validate(pool)
            return pool
        }
    }

    /// `MIN-MAX` source ports (`SNATPool.parsePorts`).
    static func portRange(_ text: String) throws -> ClosedRange<UInt16> {
        try reasoned { () throws(BalancerError) in try SNATPool.parsePorts(text) }
    }

    /// `0xE5=text` or `0xE5=hex:0a0b` (`ServiceSpec.parseTLV`).
    static func tlv(_ text: String) throws -> ProxyTLV {
        try reasoned { () throws(BalancerError) in try ServiceSpec.parseTLV(text) }
    }

    /// An interface name as the kernel takes it (IFNAMSIZ).
    static func interface(_ text: String) throws -> String {
        guard !text.isEmpty, text.utf8.count <= 15, !text.contains("/"), !text.contains(where: \.isWhitespace) else {
            throw ValidationError("not an interface name")
        }
        return text
    }

    /// The balancer's error as a reason: ArgumentParser already quotes the value, so
    /// a malformed endpoint's message is only what is wrong with it.
    private static func reasoned<T>(_ body: () throws(BalancerError) -> T) throws -> T {
        do { return try body() } catch {
            if case .malformedEndpoint(_, let why) = error { throw ValidationError(why) }
            throw ValidationError("\(error)")
        }
    }
}

/// `--proxy v1|v2`. `none` is what a service without the option gets, not a value.
extension ProxyMode: ExpressibleByArgument {
    public init?(argument: String) {
        guard let mode = ProxyMode(rawValue: argument), mode != .none else { return nil }
        self = mode
    }

    public static var allValueStrings: [String] { ["v1", "v2"] }
}

/// `-o table|json` for the commands that list things.
struct OutputOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("Output for people (table) or for scripts (json).", valueName: "table|json"))
    var output: OutputFormat = .table
}
