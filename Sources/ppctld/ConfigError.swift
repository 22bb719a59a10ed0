/// One problem of a configuration file: where it is (file, line, key path such
/// as `services[2].backends[0].weight`) and what is wrong.
struct ConfigIssue: Equatable, CustomStringConvertible {
    var file: String
    var line: Int
    var path: String
    var message: String

    /// `FILE:LINE: PATH: MESSAGE`.
    var description: String { "\(file):\(line): \(path.isEmpty ? "" : path + ": ")\(message)" }
}

/// Why a configuration was refused. Nothing was changed when it is thrown.
enum ConfigError: Error, CustomStringConvertible {
    /// The file cannot be read: the path and the reason.
    case unreadable(String, String)
    /// The file's problems, all of them, in file order.
    case invalid([ConfigIssue])

    var issues: [ConfigIssue] {
        switch self {
        case .unreadable(let file, let why): return [ConfigIssue(file: file, line: 0, path: "", message: "cannot read it: \(why)")]
        case .invalid(let issues): return issues
        }
    }

    /// One line per issue.
    var description: String { issues.map(\.description).joined(separator: "\n") }
}
