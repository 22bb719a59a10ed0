/// Why a change to the balancer was refused. Each case names the bad value; the
/// description is the one-line message ppctl prints. Nothing was changed when one
/// of these is thrown.
public enum BalancerError: Error, Equatable, CustomStringConvertible {
    /// Text that is not `IP:PORT[,weight=N]`: the text and what is wrong with it.
    case malformedEndpoint(String, String)
    /// An address that cannot be a VIP, backend or SNAT address, and what it is
    /// ("a multicast address").
    case unusableAddress(String, String)
    /// An IPv4-mapped IPv6 address (::ffff:a.b.c.d), and the IPv4 address to write
    /// instead: ppctl takes IPv4 addresses only as IPv4.
    case ipv4Mapped(String, ipv4: String)
    /// The same backend endpoint twice in one service.
    case duplicateBackend(String)
    /// A backend equal to the service's VIP and port.
    case backendIsVIP(String)
    /// A backend equal to the VIP:PORT of another service (connections would
    /// loop through the balancer).
    case backendIsAVIP(String)
    /// A new service's VIP:PORT equal to a backend of a service.
    case vipIsABackend(String)
    /// An SNAT address equal to the service's VIP address.
    case snatIsVIP(String)
    /// An IPv6 backend or SNAT address for an IPv4 VIP, or the reverse: the VIP,
    /// and what is of the other family ("backend [2001:2::2]:80", "--snat 2001:2::1").
    case mixedFamilies(String, String)
    /// `service add` of a VIP:PORT that is already a service.
    case serviceExists(String)
    /// A VIP:PORT that is not a service.
    case unknownService(String)
    /// A backend the service does not have.
    case unknownBackend(String, service: String)
    /// More backends than a service can have (backend ids index them in 8 bits).
    case tooManyBackends(Int, limit: Int)
    /// Every service id is taken.
    case tooManyServices(limit: Int)
    /// A TLV the service cannot carry, and why.
    case invalidTLV(String)
    /// Options that contradict each other, said in full.
    case contradiction(String)
    /// A service another owner manages (`ppctl service add` vs ppctld's file): the
    /// VIP:PORT and its owner.
    case ownedByAnother(String, owner: ServiceOwner)

    public var description: String {
        switch self {
        case .malformedEndpoint(let text, let why): return "invalid endpoint '\(text)': \(why)"
        case .unusableAddress(let text, let why): return "address \(text) cannot be used: it is \(why)"
        case .ipv4Mapped(let text, let ipv4):
            return "address \(text) is IPv4-mapped: write the IPv4 address \(ipv4) (ppctl does not take IPv4-mapped IPv6 addresses)"
        case .duplicateBackend(let b): return "backend \(b) is given twice"
        case .backendIsVIP(let b): return "backend \(b) is the service's own VIP"
        case .backendIsAVIP(let b): return "backend \(b) is the VIP of a service (connections would loop through the balancer)"
        case .vipIsABackend(let v):
            return "\(v) is a backend of a service, so it cannot be a VIP (connections would loop through the balancer)"
        case .snatIsVIP(let a):
            return "--snat \(a) is the service's VIP address (the backends' replies must come back to the balancer, not to the VIP)"
        case .mixedFamilies(let vip, let what):
            return "\(what) is not of the same address family as \(vip) (mixed IPv4/IPv6 is not supported)"
        case .serviceExists(let s): return "service \(s) already exists (delete it first, or use `ppctl backend add`)"
        case .unknownService(let s): return "no service \(s)"
        case .unknownBackend(let b, let s): return "service \(s) has no backend \(b)"
        case .tooManyBackends(let n, let limit): return "\(n) backends exceed the limit of \(limit) per service"
        case .tooManyServices(let limit): return "the table of \(limit) services is full"
        case .invalidTLV(let why): return "invalid TLV: \(why)"
        case .contradiction(let why): return why
        case .ownedByAnother(let s, let owner):
            return owner == .cli
                ? "service \(s) was added with `ppctl service add` (owner cli) and ppctld does not take it over: `ppctl service delete \(s)` first, or leave it out of the file"
                : "service \(s) is managed by ppctld (owner ppctld): change it in ppctld's file"
        }
    }
}
