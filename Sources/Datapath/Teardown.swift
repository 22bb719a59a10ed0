import CLibbpf
import DatapathABI
import Foundation

/// Taking the datapath away: ppctl's tc filters off interfaces, and, for the whole
/// instance, every cgroup link and every pin. The one place that detaches and
/// unpins (`Loader` and `SocketPath` only load and attach).
public enum Teardown {
    /// Detaches from the named interfaces, or, with nil, from every interface of the
    /// namespace that carries ppctl's filter (recorded in ppctl_ifaces or not), and
    /// then unpins every map and removes the instance directory. Only ppctl_ifaces is
    /// opened, so this works even when the other pinned maps no longer match this
    /// build (the way out of an incompatible upgrade). Returns the interfaces
    /// detached from. Throws `.notAttached` if there is nothing to detach,
    /// `.interfaceNotAttached` for a name not in ppctl_ifaces (before changing
    /// anything).
    public static func detach(instance: Instance, interfaces: [String]?) throws -> [String] {
        Objects.configureLogging()
        let ifaces = instance.isAttached ? try BPFMap<UInt32, ppctl_iface>(pinnedAt: instance.pin(.ifaces)) : nil
        let recorded = ifaces?.entries().map { (name: Loader.ifaceName($0.value), index: $0.key) } ?? []
        guard let interfaces else {
            var detached: [String] = []
            for (name, index) in recorded {
                let rc = TCFilter.detach(ifindex: index)
                // Gone already (interface deleted, filter removed by hand): nothing to do.
                if rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EINVAL { try check(rc, "detaching from \(name)") }
                try ifaces?.delete(index)
                detached.append(name)
            }
            for (name, index) in namespaceInterfaces() where !recorded.contains(where: { $0.index == index }) {
                if TCFilter.detach(ifindex: index) == 0 { detached.append(name) }
            }
            guard ifaces != nil || !detached.isEmpty else { throw DatapathError.notAttached(directory: instance.directory) }
            SocketPath.detachAll(instance: instance)
            try unpinAll(instance)
            return detached
        }
        guard let ifaces else { throw DatapathError.notAttached(directory: instance.directory) }
        let targets = try interfaces.map { name in
            guard let entry = recorded.first(where: { $0.name == name }) else { throw DatapathError.interfaceNotAttached(name) }
            return entry
        }
        for (name, index) in targets {
            let rc = TCFilter.detach(ifindex: index)
            if rc < 0 && rc != -ENOENT && rc != -ENODEV && rc != -EINVAL { try check(rc, "detaching from \(name)") }
            try ifaces.delete(index)
        }
        return targets.map(\.name)
    }

    /// Every interface of the network namespace the process is in.
    static func namespaceInterfaces() -> [(name: String, index: UInt32)] {
        guard let list = if_nameindex() else { return [] }
        defer { if_freenameindex(list) }
        var result: [(String, UInt32)] = []
        var entry = list
        while entry.pointee.if_index != 0, let name = entry.pointee.if_name {
            result.append((String(cString: name), entry.pointee.if_index))
            entry += 1
        }
        return result
    }

    /// Files on /run that belong to an instance (ppctld's health report, the CLI's
    /// drain requests): gone with the instance.
    static let runFiles = ["health.json", "drains.json"]

    /// Removes every pin of the instance and its directory, and its files on /run.
    /// The maps are freed when their last user (a program on an interface, an open
    /// descriptor) goes away.
    static func unpinAll(_ instance: Instance) throws {
        for suffix in runFiles { unlink(instance.runFile(suffix)) }
        guard let dir = opendir(instance.directory) else {
            if errno == ENOENT { return }
            throw DatapathError.system("opening \(instance.directory)", errno: errno)
        }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names where unlink(instance.directory + "/" + name) < 0 && errno != ENOENT {
            throw DatapathError.system("unpinning \(instance.directory)/\(name)", errno: errno)
        }
        if rmdir(instance.directory) < 0 && errno != ENOENT {
            throw DatapathError.system("removing \(instance.directory)", errno: errno)
        }
    }

}
