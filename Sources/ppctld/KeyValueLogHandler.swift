import Foundation
import Logging

/// A swift-log handler that writes one line per event to stderr, as key=value
/// pairs (logfmt): `ts=... level=info event=reload msg="..." added=1`. Values with
/// blanks, quotes or '=' are quoted; the event's metadata follows in key order.
struct KeyValueLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = [("ts", Self.timestamp()), ("level", event.level.rawValue), ("msg", "\(event.message)")]
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        fields += all.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
        let line = fields.map { "\($0)=\(Self.quoted($1))" }.joined(separator: " ") + "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// `value`, in double quotes (with `"` and `\` escaped, newlines as \n) if it
    /// is empty or holds a blank, a quote or '='.
    static func quoted(_ value: String) -> String {
        guard value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0.isNewline }) else { return value }
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "\"" + escaped + "\""
    }

    private static func timestamp() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date())
    }
}
