import ArgumentParser
import Balancer
import Datapath
import Foundation

/// Options every balancer command takes.
struct InstanceOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Act on the balancer in network namespace /run/netns/NAME (ppctl enters it itself; its pins are kept per namespace).",
        valueName: "name"))
    var netns: String?

    /// Checks root, enters the namespace, and returns the instance.
    func instance() throws -> Instance {
        guard geteuid() == 0 else {
            printError("ppctl needs root (CAP_BPF and CAP_NET_ADMIN) for this command")
            throw ExitCode(77)
        }
        if let netns {
            do { try Instance.enterNetworkNamespace(netns) } catch { throw fail(error) }
        }
        return Instance(netns: netns)
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
}

/// Prints a one-line error and returns the exit code to throw: 64 for bad input,
/// 1 for an operation that failed.
func fail(_ error: Error) -> ExitCode {
    printError("\(error)")
    return error is BalancerError ? ExitCode(64) : ExitCode(1)
}

/// Runs `body`, turning its errors into one-line messages and exit codes.
func run<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ExitCode { throw e } catch { throw fail(error) }
}

/// Parses a value into a ValidationError (exit 64) naming it.
func validated<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw ValidationError("\(error)") }
}

/// Left-aligned columns for people.
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

/// Stable, pretty JSON for scripts.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
