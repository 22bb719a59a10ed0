/// What `Controller.reconcile` changed, by VIP:PORT.
public struct Reconciliation: Equatable, Sendable {
    /// Services that were not in the maps.
    public var added: [Endpoint] = []
    /// Services whose backends, weights, header or SNAT pool changed (in place).
    public var changed: [Endpoint] = []
    /// Services of the owner that the new list no longer has.
    public var removed: [Endpoint] = []

    /// A result; `Controller.reconcile` makes them.
    public init(added: [Endpoint] = [], changed: [Endpoint] = [], removed: [Endpoint] = []) {
        self.added = added
        self.changed = changed
        self.removed = removed
    }

    /// True if the maps already matched.
    public var isEmpty: Bool { added.isEmpty && changed.isEmpty && removed.isEmpty }
}
