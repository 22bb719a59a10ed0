import CLibbpf
import Foundation

/// ppctl's tc filters: one program at clsact ingress and one at egress of an
/// interface, under a fixed handle and priority (`Loader.filterHandle`,
/// `Loader.filterPriority`) so that attaching again replaces them.
enum TCFilter {
    /// Attaches `programFD` at `point` of the interface, creating its clsact qdisc
    /// if needed and replacing ppctl's filter if there is one.
    static func attach(_ programFD: Int32, ifindex: UInt32, _ point: bpf_tc_attach_point, name: String) throws {
        try withHook(ifindex: ifindex, point) { hook in
            let created = bpf_tc_hook_create(hook)
            if created < 0 && created != -EEXIST { try check(created, "creating the clsact qdisc on \(name)") }
            try Objects.withZeroed(bpf_tc_opts.self) { opts in
                opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                opts.pointee.prog_fd = programFD
                opts.pointee.handle = Loader.filterHandle
                opts.pointee.priority = Loader.filterPriority
                opts.pointee.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
                try check(bpf_tc_attach(hook, opts), "attaching to \(name)")
            }
        }
    }

    /// Removes ppctl's filters from an interface's ingress and egress; the libbpf
    /// result of the ingress one (an egress filter may be missing: attached by an
    /// older ppctl).
    static func detach(ifindex: UInt32) -> Int32 {
        var result: Int32 = 0
        for point in [BPF_TC_EGRESS, BPF_TC_INGRESS] {
            result = withHook(ifindex: ifindex, point) { hook in
                Objects.withZeroed(bpf_tc_opts.self) { opts in
                    opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                    opts.pointee.handle = Loader.filterHandle
                    opts.pointee.priority = Loader.filterPriority
                    return bpf_tc_detach(hook, opts)
                }
            }
        }
        return result
    }

    /// A clsact hook (ingress or egress) on an interface.
    static func withHook<R>(
        ifindex: UInt32, _ point: bpf_tc_attach_point,
        _ body: (UnsafeMutablePointer<bpf_tc_hook>) throws -> R
    ) rethrows -> R {
        try Objects.withZeroed(bpf_tc_hook.self) { hook in
            hook.pointee.sz = MemoryLayout<bpf_tc_hook>.size
            hook.pointee.ifindex = Int32(ifindex)
            hook.pointee.attach_point = point
            return try body(hook)
        }
    }

}
