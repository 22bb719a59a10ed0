/// Who manages a service: the `owner` field of its entry in the services map.
/// ppctld changes and removes only the services it owns; `ppctl service add`
/// makes services of the CLI, which ppctld never touches (docs/config.md).
public enum ServiceOwner: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    /// Added with `ppctl service add` or `service apply` (and every service of
    /// pins made before owners existed: the field was reserved and zero).
    case cli = 0
    /// Declared in ppctld's configuration file.
    case ppctld = 1

    /// `cli` or `ppctld`, as `service list` shows it.
    public var description: String {
        switch self {
        case .cli: return "cli"
        case .ppctld: return "ppctld"
        }
    }
}
