/// Why a change to the balancer was refused. Each case names the bad value.
public enum BalancerError: Error, Equatable, CustomStringConvertible {
    case malformedEndpoint(String, String)
    case unusableAddress(String, String)
    case duplicateBackend(String)
    case backendIsVIP(String)
    case mixedFamilies(String, String)
    case serviceExists(String)
    case unknownService(String)
    case unknownBackend(String, service: String)
    case tooManyBackends(Int, limit: Int)
    case tooManyServices(limit: Int)
    case noBackendIDsLeft
    case invalidTLV(String)
    case contradiction(String)

    public var description: String {
        switch self {
        case .malformedEndpoint(let text, let why): return "invalid endpoint '\(text)': \(why)"
        case .unusableAddress(let text, let why): return "address \(text) cannot be used: it is \(why)"
        case .duplicateBackend(let b): return "backend \(b) is given twice"
        case .backendIsVIP(let b): return "backend \(b) is the service's own VIP"
        case .mixedFamilies(let vip, let b): return "backend \(b) is not of the same address family as \(vip) (mixed IPv4/IPv6 is not supported)"
        case .serviceExists(let s): return "service \(s) already exists (delete it first, or use `ppctl backend add`)"
        case .unknownService(let s): return "no service \(s)"
        case .unknownBackend(let b, let s): return "service \(s) has no backend \(b)"
        case .tooManyBackends(let n, let limit): return "\(n) backends exceed the limit of \(limit) per service"
        case .tooManyServices(let limit): return "the table of \(limit) services is full"
        case .noBackendIDsLeft: return "no free backend slots left"
        case .invalidTLV(let why): return "invalid TLV: \(why)"
        case .contradiction(let why): return why
        }
    }
}
