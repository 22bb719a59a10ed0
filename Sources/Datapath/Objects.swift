import CLibbpf
import DatapathABI
import DatapathSkeletons
import Foundation

/// The eBPF objects ppctl embeds, opened over an instance: each skeleton opened on
/// the object's bytes with its maps pinned in the instance directory, the pins
/// reconciled with what the object defines, the layout version checked. `Loader`
/// (tc) and `SocketPath` (cgroups) load and attach programs through it; neither
/// opens an object itself.
enum Objects {
    /// Opens the skeleton of an embedded object (base64) with `open` (a shim of
    /// DatapathSkeletons), its maps pinned in the instance directory, and checks that
    /// every map it pins is one `Maps.Name` knows. The caller destroys it.
    static func openSkeleton<Skeleton>(
        _ base64: String, instance: Instance,
        _ open: (UnsafeRawPointer?, Int, UnsafePointer<CChar>?) -> UnsafeMutablePointer<Skeleton>?
    ) throws -> UnsafeMutablePointer<Skeleton> {
        guard let bytes = Data(base64Encoded: base64) else {
            throw DatapathError.objectMismatch("the embedded object is not valid base64")
        }
        let skeleton = try bytes.withUnsafeBytes { raw in
            try instance.directory.withCString { pinRoot in
                guard let skeleton = open(raw.baseAddress, raw.count, pinRoot) else {
                    throw DatapathError.system("opening the embedded eBPF object", errno: errno)
                }
                return skeleton
            }
        }
        return skeleton
    }

    /// Before a load: libbpf reuses a pinned map only if it matches the object's
    /// definition, and fails with a bare EINVAL otherwise. Say which map and why
    /// instead, and size the conntrack map: `maxConnections` if given (it must then
    /// agree with a pinned map), else the pinned map's size, else the default.
    static func reconcilePins(
        object: OpaquePointer?, conntrack: OpaquePointer?, instance: Instance,
        maxConnections: Int?
    ) throws {
        if let conntrack, let maxConnections {
            try check(bpf_map__set_max_entries(conntrack, UInt32(2 * maxConnections)), "sizing the conntrack map")
        }
        var map = bpf_object__next_map(object, nil)
        while let m = map {
            defer { map = bpf_object__next_map(object, m) }
            let name = String(cString: bpf_map__name(m))
            // Every map the object pins has its name in Maps.Name, the one list of pins.
            if bpf_map__pin_path(m) != nil && Maps.Name(rawValue: name) == nil {
                throw DatapathError.objectMismatch("it pins map \(name), which Maps.Name does not list")
            }
            let fd = bpf_obj_get(instance.directory + "/" + name)
            guard fd >= 0 else { continue }  // not pinned yet: libbpf creates it
            defer { close(fd) }
            var info = bpf_map_info()
            var len = UInt32(MemoryLayout<bpf_map_info>.size)
            try check(bpf_obj_get_info_by_fd(fd, &info, &len), "reading the description of pinned map \(name)")
            if m == conntrack, bpf_map__max_entries(m) != info.max_entries {
                guard maxConnections == nil else {
                    throw DatapathError.conntrackSizeFixed(current: Int(info.max_entries) / 2, requested: maxConnections!)
                }
                try check(bpf_map__set_max_entries(m, info.max_entries), "sizing the conntrack map")
            }
            var differences: [String] = []
            func compare(_ what: String, _ pinned: UInt32, _ ours: UInt32) {
                if pinned != ours { differences.append("\(what) \(pinned), not \(ours)") }
            }
            compare("type", info.type, bpf_map__type(m).rawValue)
            compare("key size", info.key_size, bpf_map__key_size(m))
            compare("value size", info.value_size, bpf_map__value_size(m))
            compare("max entries", info.max_entries, bpf_map__max_entries(m))
            compare("flags", info.map_flags, bpf_map__map_flags(m))
            if !differences.isEmpty {
                throw DatapathError.incompatiblePin(map: name, differences.joined(separator: ", "))
            }
        }
    }

    /// Throws `.newerABI` if the instance was last attached by a build whose map
    /// layout is newer than this one's (its pins may have names this build does
    /// not know). A config map of another shape is left to `reconcilePins`.
    static func checkPinnedVersion(_ instance: Instance) throws {
        guard let config = try? BPFMap<UInt32, ppctl_config>(pinnedAt: instance.pin(.config)),
            let pinned = config.lookup(0), pinned.abi_version > UInt32(PPCTL_ABI_VERSION)
        else { return }
        throw DatapathError.newerABI(pinned: Int(pinned.abi_version), supported: Int(PPCTL_ABI_VERSION))
    }

    /// Opens the socket path's skeleton over the embedded object, its maps reconciled
    /// with the instance's pins. The caller destroys it.
    static func openSocketPath(instance: Instance) throws -> UnsafeMutablePointer<lb_sock> {
        let skeleton = try openSkeleton(BPFObjectBytes.lbSock, instance: instance, ppctl_sock_open)
        do {
            try reconcilePins(
                object: skeleton.pointee.obj, conntrack: skeleton.pointee.maps.ppctl_conntrack,
                instance: instance, maxConnections: nil)
        } catch {
            lb_sock__destroy(skeleton)
            throw error
        }
        return skeleton
    }

    /// Creates and pins the socket path's maps the instance lacks, loading none of
    /// its programs (the tc attach calls this: every pin exists from the first one).
    static func createSocketPathMaps(instance: Instance) throws {
        let skeleton = try openSocketPath(instance: instance)
        defer { lb_sock__destroy(skeleton) }
        var program = bpf_object__next_program(skeleton.pointee.obj, nil)
        while let p = program {
            try check(bpf_program__set_autoload(p, false), "preparing the socket path's maps")
            program = bpf_object__next_program(skeleton.pointee.obj, p)
        }
        try check(lb_sock__load(skeleton), "creating the socket path's maps")
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

    /// libbpf rejects option structs whose padding is not zero, and Swift does not
    /// promise to zero padding: build them in zeroed memory and set fields in place.
    static func withZeroed<T, R>(_ type: T.Type, _ body: (UnsafeMutablePointer<T>) throws -> R) rethrows -> R {
        let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<T>.size)
        defer { raw.deallocate() }
        return try body(raw.assumingMemoryBound(to: T.self))
    }
}
