import Datapath

/// Attaching an instance the one way `ppctl attach` and ppctld do it.
public enum Attachment {
    /// Loads or upgrades the datapath of `instance` (`Loader.attach`: pins made or
    /// kept, layouts migrated, the seed written and the Maglev tables rebuilt for it
    /// before any new program runs), attaches it at tc on `interfaces` (possibly
    /// none: an instance may serve local clients only) and its socket programs on
    /// `cgroup`. A first attach that fails leaves nothing behind. Call it under the
    /// instance lock.
    public static func attach(
        _ instance: Instance, interfaces: [String], cgroup: Cgroup?, maxConnections: Int?,
        hashSeed: UInt32?
    ) throws -> [Loader.Attached] {
        let first = !instance.isAttached
        do {
            let attached = try Loader.attach(
                instance: instance, interfaces: interfaces, maxConnections: maxConnections,
                hashSeed: hashSeed
            ) { maps, seedChanged in
                try Controller(ServiceTables(maps)).rebuildTables(all: seedChanged)
            }
            if let cgroup { try SocketPath.attach(instance: instance, cgroup: cgroup) }
            return attached
        } catch {
            if first && instance.isAttached { _ = try? Teardown.detach(instance: instance, interfaces: nil) }
            throw error
        }
    }
}
