/// A backend of a service: an endpoint and its weight.
public struct Backend: Hashable, Sendable {
    /// Where connections go.
    public var endpoint: Endpoint
    /// Relative share of new connections, in `weightRange`.
    public var weight: Int

    /// The weights a backend can have.
    public static let weightRange = 1...10_000

    /// A backend; `weight` is not checked here (`ServiceSpec.validate()` does).
    public init(endpoint: Endpoint, weight: Int = 1) {
        self.endpoint = endpoint
        self.weight = weight
    }

    /// Parses `IP:PORT[,weight=N]` (`[IPv6]:PORT[,weight=N]`), N decimal in
    /// `weightRange`, default 1. Throws `.malformedEndpoint` naming the text and
    /// what is wrong with it.
    public init(parsing text: String) throws(BalancerError) {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        endpoint = try Endpoint(parsing: String(parts[0]))
        var weight: Int?
        for option in parts.dropFirst() {
            let kv = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, kv[0] == "weight" else {
                throw .malformedEndpoint(text, "unknown backend option '\(option)' (expected weight=N)")
            }
            guard weight == nil else { throw .malformedEndpoint(text, "the weight is given twice") }
            let range = Self.weightRange
            guard !kv[1].isEmpty, kv[1].count <= 6, kv[1].allSatisfy(\.isASCIIDigit), let w = Int(kv[1]),
                range.contains(w)
            else {
                throw .malformedEndpoint(text, "weight '\(kv[1])' is not a number in \(range.lowerBound)...\(range.upperBound)")
            }
            weight = w
        }
        self.weight = weight ?? 1
    }
}
