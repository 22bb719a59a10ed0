import ArgumentParser
import Balancer
import Datapath
import Foundation

// MARK: - Errors and exit codes

/// Prints `error: MESSAGE` on stderr.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
}

/// Prints `warning: MESSAGE` on stderr.
func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
}

/// Prints a one-line error and returns the exit code to throw: 64 for input the
/// balancer refuses (`BalancerError`, also about a line of a file), 77 for a pin
/// directory others could change, 69 for a kernel too old for the datapath, 1 for
/// an operation that failed.
func fail(_ error: Error) -> ExitCode {
    printError("\(error)")
    if error is BalancerError || (error as? InputLineError)?.error is BalancerError { return ExitCode(64) }
    if case .unsafePinPath = error as? DatapathError { return ExitCode(77) }
    if case .kernelTooOld = error as? DatapathError { return kernelTooOldExitCode }
    return ExitCode(1)
}

/// The exit code of an attach on a kernel older than `Kernel.minimum` (sysexits'
/// EX_UNAVAILABLE).
let kernelTooOldExitCode = ExitCode(69)

/// Runs `body`, turning its errors into one-line messages and exit codes.
func run<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as ExitCode { throw e } catch { throw fail(error) }
}

/// Parses a value, turning its error into a ValidationError (exit 64) naming it.
func validated<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch { throw ValidationError("\(error)") }
}
