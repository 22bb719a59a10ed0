import Foundation

/// The kernel the datapath needs, checked by every attach before anything is loaded.
///
/// The newest kernel feature ppctl uses decides it: `bpf_fib_lookup` with
/// `BPF_FIB_LOOKUP_SRC` (Linux 6.7), which finds the SNAT address of a new connection
/// (the route's source). Older kernels load the programs but refuse that flag at run
/// time with EINVAL, and every SYN to a service without a SNAT pool would be dropped.
/// The rest is older: `bpf_cast_to_kern_ctx` (6.2, to read `skb->ip_summed` through
/// CO-RE), `bpf_set_retval` in cgroup programs (5.18), `bpf_timer` (5.15),
/// `bpf_for_each_map_elem` (5.13), global functions with pointer arguments (5.12),
/// `bpf_ktime_get_coarse_ns` (5.11), `bpf_redirect_peer` and `bpf_redirect_neigh`
/// (5.10), getpeername hooks (5.8), `bpf_get_netns_cookie` and cgroup bpf links (5.7).
public enum Kernel {
    /// A kernel release's major and minor numbers.
    public struct Version: Comparable, CustomStringConvertible, Sendable {
        public let major: Int
        public let minor: Int
        public init(_ major: Int, _ minor: Int) {
            self.major = major
            self.minor = minor
        }
        public static func < (a: Version, b: Version) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
        public var description: String { "\(major).\(minor)" }
    }

    /// The oldest kernel the datapath runs on.
    public static let minimum = Version(6, 7)

    /// What needs `minimum`, for messages.
    public static let minimumReason = "bpf_fib_lookup with BPF_FIB_LOOKUP_SRC"

    /// Set to 1 to skip the check (a distribution kernel older than `minimum` that has
    /// the feature backported).
    public static let skipVariable = "PPCTL_SKIP_KERNEL_CHECK"

    /// The major and minor numbers `uname -r` starts with ("6.1.0-18-amd64" → 6.1);
    /// nil if it does not start with them.
    public static func version(release: String) -> Version? {
        let parts = release.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let major = Int(parts[0]) else { return nil }
        let minor = parts[1].prefix { $0.isASCII && $0.isNumber }
        guard !minor.isEmpty, let m = Int(minor) else { return nil }
        return Version(major, m)
    }

    /// The running kernel's release (`uname -r`).
    public static func release() -> String {
        var name = utsname()
        guard uname(&name) == 0 else { return "" }
        return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Throws `.kernelTooOld` if `release` is older than `minimum`. A release that does
    /// not parse passes (the load then says what fails), and so does any release when
    /// PPCTL_SKIP_KERNEL_CHECK=1.
    public static func check(
        release: String = Kernel.release(),
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws {
        if environment[skipVariable] == "1" { return }
        guard let version = version(release: release), version < minimum else { return }
        throw DatapathError.kernelTooOld(release: release, minimum: minimum.description)
    }
}
