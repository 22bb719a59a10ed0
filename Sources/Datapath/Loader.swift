import CLibbpf
import DatapathABI
import Foundation

/// Loads the embedded tc program, attaches it to interfaces and detaches it.
public enum Loader {
    /// tc filter handle and priority of ppctl's program ("PP").
    public static let filterHandle: UInt32 = 0x5050
    public static let filterPriority: UInt32 = 0x5050

    /// An interface the program was attached to.
    public struct Attached: Sendable {
        public let name: String
        public let ifindex: UInt32
        /// Packets leave it with bpf_redirect_peer (a veth whose peer is elsewhere).
        public let redirectsToPeer: Bool
    }

    /// Loads (or upgrades) the datapath in `instance` and attaches it at tc ingress of
    /// every interface. Maps already pinned are reused, connection state included;
    /// the program on each interface is replaced atomically. `maxConnections` sizes
    /// the conntrack map when it is created (nil: the default, or what exists).
    public static func attach(instance: Instance, interfaces: [String], maxConnections: Int?) throws -> [Attached] {
        var indexes: [(String, UInt32)] = []
        for name in interfaces {
            let index = if_nametoindex(name)
            guard index != 0 else { throw DatapathError.unknownInterface(name) }
            indexes.append((name, index))
        }
        try instance.prepareDirectory()
        configureLogging()

        guard let bytes = Data(base64Encoded: BPFObjectBytes.lbTc) else {
            throw DatapathError.objectMismatch("a decodable object")
        }
        let object: OpaquePointer = try bytes.withUnsafeBytes { raw in
            try instance.directory.withCString { pinRoot in
                try "ppctl".withCString { objectName in try withZeroed(bpf_object_open_opts.self) { opts in
                    opts.pointee.sz = MemoryLayout<bpf_object_open_opts>.size
                    opts.pointee.object_name = objectName
                    opts.pointee.pin_root_path = pinRoot
                    guard let obj = bpf_object__open_mem(raw.baseAddress, raw.count, opts) else {
                        throw DatapathError.system("opening the embedded eBPF object", errno: errno)
                    }
                    return obj
                } }
            }
        }
        defer { bpf_object__close(object) }

        guard let conntrack = bpf_object__find_map_by_name(object, "ppctl_conntrack") else {
            throw DatapathError.objectMismatch("map ppctl_conntrack")
        }
        let existing = try? BPFMap<ppctl_ct_key, ppctl_ct_entry>(pinnedAt: instance.pin("ppctl_conntrack"))
        if let maxConnections {
            try check(bpf_map__set_max_entries(conntrack, UInt32(2 * maxConnections)), "sizing the conntrack map")
        } else if let existing, existing.capacity > 0 {
            try check(bpf_map__set_max_entries(conntrack, UInt32(existing.capacity)), "sizing the conntrack map")
        }
        try check(bpf_object__load(object), "loading the datapath (PPCTL_DEBUG=1 shows the verifier log)")

        guard let program = bpf_object__find_program_by_name(object, "ppctl_tc_ingress") else {
            throw DatapathError.objectMismatch("program ppctl_tc_ingress")
        }
        let programFD = bpf_program__fd(program)

        let maps = try Maps(instance)
        if maps.config.lookup(0).map({ $0.timeout_syn == 0 }) ?? true {
            try maps.config.update(0, defaultConfig(), mode: .any)
        }
        // Stop the sweeper armed by a previous program (writing the element cancels
        // its timer); the new program arms its own on the next connection.
        let gc = try BPFMap<UInt32, ppctl_gc_state>(pinnedAt: instance.pin("ppctl_gc"))
        try gc.update(0, ppctl_gc_state(), mode: .any)

        var attached: [Attached] = []
        for (name, index) in indexes {
            try withTCHook(ifindex: index) { hook in
                let created = bpf_tc_hook_create(hook)
                if created < 0 && created != -EEXIST { try check(created, "creating the clsact qdisc on \(name)") }
                try withZeroed(bpf_tc_opts.self) { opts in
                    opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                    opts.pointee.prog_fd = programFD
                    opts.pointee.handle = filterHandle
                    opts.pointee.priority = filterPriority
                    opts.pointee.flags = UInt32(BPF_TC_F_REPLACE.rawValue)
                    try check(bpf_tc_attach(hook, opts), "attaching to \(name)")
                }
            }

            let peer = ppctl_iface_redirects_to_peer(name) == 1
            var iface = ppctl_iface()
            withUnsafeMutableBytes(of: &iface.name) { dst in
                let src = Array(name.utf8.prefix(15))
                dst.copyBytes(from: src)
            }
            iface.flags = peer ? UInt32(PPCTL_IFACE_PEER) : 0
            try maps.ifaces.update(index, iface, mode: .any)
            attached.append(Attached(name: name, ifindex: index, redirectsToPeer: peer))
        }
        return attached
    }

    /// Detaches from the named interfaces, or, with nil, from every attached
    /// interface and then unpins every map and removes the instance directory.
    public static func detach(instance: Instance, interfaces: [String]?) throws -> [String] {
        let maps = try Maps(instance)
        var targets: [(String, UInt32)] = []
        if let interfaces {
            let known = maps.ifaces.entries()
            for name in interfaces {
                guard let entry = known.first(where: { ifaceName($0.value) == name }) else {
                    throw DatapathError.interfaceNotAttached(name)
                }
                targets.append((name, entry.key))
            }
        } else {
            targets = maps.ifaces.entries().map { (ifaceName($0.value), $0.key) }
        }
        var detached: [String] = []
        for (name, index) in targets {
            let rc = withTCHook(ifindex: index) { hook in
                withZeroed(bpf_tc_opts.self) { opts in
                    opts.pointee.sz = MemoryLayout<bpf_tc_opts>.size
                    opts.pointee.handle = filterHandle
                    opts.pointee.priority = filterPriority
                    return bpf_tc_detach(hook, opts)
                }
            }
            // Gone already (interface deleted, filter removed by hand): nothing to do.
            if rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EINVAL { try check(rc, "detaching from \(name)") }
            try maps.ifaces.delete(index)
            detached.append(name)
        }
        if interfaces == nil {
            for name in Maps.pinnedNames { unlink(instance.pin(name)) }
            rmdir(instance.directory)
        }
        return detached
    }

    /// libbpf rejects option structs whose padding is not zero, and Swift does not
    /// promise to zero padding: build them in zeroed memory and set fields in place.
    static func withZeroed<T, R>(_ type: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        defer { raw.deallocate() }
        return try body(raw.assumingMemoryBound(to: T.self))
    }

    /// A clsact ingress hook on an interface.
    static func withTCHook<R>(ifindex: UInt32, _ body: (UnsafeMutablePointer<bpf_tc_hook>) throws -> R) rethrows -> R {
        try withZeroed(bpf_tc_hook.self) { hook in
            hook.pointee.sz = MemoryLayout<bpf_tc_hook>.size
            hook.pointee.ifindex = Int32(ifindex)
            hook.pointee.attach_point = BPF_TC_INGRESS
            return try body(hook)
        }
    }

    /// The name stored in an interface entry.
    public static func ifaceName(_ iface: ppctl_iface) -> String {
        withUnsafeBytes(of: iface.name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    /// Defaults from ppctl_abi.h.
    public static func defaultConfig() -> ppctl_config {
        var c = ppctl_config()
        c.snat_port_min = UInt16(PPCTL_DEFAULT_SNAT_PORT_MIN)
        c.snat_port_max = UInt16(PPCTL_DEFAULT_SNAT_PORT_MAX)
        c.timeout_syn = UInt32(PPCTL_DEFAULT_TIMEOUT_SYN)
        c.timeout_established = UInt32(PPCTL_DEFAULT_TIMEOUT_EST)
        c.timeout_fin = UInt32(PPCTL_DEFAULT_TIMEOUT_FIN)
        c.timeout_close = UInt32(PPCTL_DEFAULT_TIMEOUT_CLOSE)
        c.timeout_rst = UInt32(PPCTL_DEFAULT_TIMEOUT_RST)
        c.gc_interval = UInt32(PPCTL_DEFAULT_GC_INTERVAL)
        return c
    }

    /// libbpf prints nothing unless PPCTL_DEBUG is set (then everything, verifier
    /// logs included, to stderr).
    static func configureLogging() {
        if getenv("PPCTL_DEBUG") != nil {
            libbpf_set_print { _, format, args in vdprintf(2, format, args!) }
        } else {
            libbpf_set_print { _, _, _ in
                0
            }
        }
    }
}
