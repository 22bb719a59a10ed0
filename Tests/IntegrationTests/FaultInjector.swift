import CLibbpf
import DatapathABI
import FaultABI
import Foundation

/// The test-only tc program of bpf/testing/fault.bpf.c, attached to an interface in
/// a lab namespace: drops or duplicates chosen TCP segments, deterministically.
final class FaultInjector {
    enum Hook { case ingress, egress }

    /// One rule: the nth (then `times` more) TCP segment matching the filters.
    struct Rule {
        var sourcePort: UInt16 = 0
        var destinationPort: UInt16 = 0
        var flagsMask: UInt8 = 0
        var flagsValue: UInt8 = 0
        var payload: Int32 = FAULT_PAYLOAD_ANY
        var action: Int32 = FAULT_DROP
        var seq: UInt32? = nil
        var nth: UInt32 = 1
        var times: UInt32 = 1
    }

    private let skeleton: UnsafeMutablePointer<fault>
    private let rulesFD: Int32
    private let ns: String, iface: String, hook: Hook

    init(ns: String, iface: String, hook: Hook) throws {
        self.ns = ns
        self.iface = iface
        self.hook = hook
        libbpf_set_print(nil)  // "clsact exists" is not news
        let bytes = Data(base64Encoded: TestBPFObjectBytes.fault)!
        skeleton = try bytes.withUnsafeBytes { raw in
            guard let skeleton = ppctl_fault_open(raw.baseAddress, raw.count) else {
                throw LabError.system("opening the fault injector", errno)
            }
            return skeleton
        }
        guard fault__load(skeleton) == 0 else {
            let e = errno
            fault__destroy(skeleton)
            throw LabError.system("loading the fault injector", e)
        }
        rulesFD = bpf_map__fd(skeleton.pointee.maps.fault_rules)
        let programFD = bpf_program__fd(
            hook == .ingress
                ? skeleton.pointee.progs.fault_ingress
                : skeleton.pointee.progs.fault_egress)
        try FaultInjector.inNamespace(ns) {
            var h = bpf_tc_hook()
            h.sz = MemoryLayout<bpf_tc_hook>.size
            h.ifindex = Int32(if_nametoindex(iface))
            h.attach_point = hook == .ingress ? BPF_TC_INGRESS : BPF_TC_EGRESS
            _ = bpf_tc_hook_create(&h)
            var o = bpf_tc_opts()
            o.sz = MemoryLayout<bpf_tc_opts>.size
            o.prog_fd = programFD
            o.handle = 0xFA
            o.priority = 1
            o.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
            let rc = bpf_tc_attach(&h, &o)
            guard rc == 0 else { throw LabError.system("attaching the fault injector to \(iface)", -rc) }
        }
    }

    deinit { fault__destroy(skeleton) }

    /// Runs `body` on a thread that has entered the namespace (netlink sockets are
    /// made in the calling thread's namespace).
    static func inNamespace(_ ns: String, _ body: @escaping () throws -> Void) throws {
        try Background<Void> {
            let rc = ppctl_enter_netns("/run/netns/" + ns)
            guard rc == 0 else { throw LabError.system("entering \(ns)", -rc) }
            try body()
        }.wait()
    }

    func set(_ index: UInt32, _ rule: Rule) throws {
        var r = fault_rule()
        r.sport = rule.sourcePort.bigEndian
        r.dport = rule.destinationPort.bigEndian
        r.flags_mask = rule.flagsMask
        r.flags_value = rule.flagsValue
        r.payload = UInt8(rule.payload)
        r.action = UInt8(rule.action)
        r.match_seq = rule.seq == nil ? 0 : 1
        r.seq = rule.seq ?? 0
        r.nth = rule.nth
        r.times = rule.times
        var k = index
        guard bpf_map_update_elem(rulesFD, &k, &r, 0) == 0 else { throw LabError.system("writing fault rule", errno) }
    }

    /// (matched, acted) for a rule.
    func counters(_ index: UInt32) -> (seen: UInt32, applied: UInt32) {
        var k = index
        var r = fault_rule()
        _ = bpf_map_lookup_elem(rulesFD, &k, &r)
        return (r.seen, r.applied)
    }
}
