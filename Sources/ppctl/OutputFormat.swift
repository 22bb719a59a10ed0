import ArgumentParser
import Foundation

/// `-o table|json`: columns for people, or JSON for scripts (docs/cli.md).
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

/// Left-aligned columns separated by two spaces, with a header row.
func table(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    var widths = Array(repeating: 0, count: header.count)
    for row in all { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    return all.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Stable, pretty JSON for scripts (sorted keys).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
