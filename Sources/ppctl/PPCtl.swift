import ArgumentParser
import Foundation

@main
struct PPCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppctl",
        abstract: "An eBPF load balancer that gives backends the client's address in a PROXY protocol header.",
        discussion: """
            Exit codes: 0 success, 1 the operation failed, 64 invalid arguments, 69 a kernel older than Linux 6.7 (attach), 77 not root, missing capabilities or unsafe pin directories.
            Pinned state lives under $PPCTL_PIN_ROOT (default /sys/fs/bpf/ppctl)/<instance>.
            `ppctl --netns NAME <command> ...` works on the balancer in /run/netns/NAME.
            """,
        version: "0.1.0",
        subcommands: [Attach.self, Detach.self, Service.self, BackendCommand.self, Conntrack.self,
                      Stats.self, Header.self]
    )

    /// Parses and runs the command. `ppctl --netns NAME <command> ...` is read as
    /// `ppctl <command> ... --netns NAME`, so that the namespace can come first, as
    /// with `ip -n`. Errors are one line on stderr, `error: ...`.
    static func main() {
        let given = Array(CommandLine.arguments.dropFirst())
        let arguments = fillingBareCgroup(movingNetnsLast(given))
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            // A parse error of the command as typed, without a leading --netns, names
            // the real problem better than one about where --netns ended up.
            var reported = error
            if arguments != given, exitCode(for: error) != .success {
                do {
                    _ = try parseAsRoot(withoutNetns(given))
                    let path = (["ppctl"] + commandPath(withoutNetns(given))).joined(separator: " ")
                    reported = ValidationError("--netns does not apply to `\(path)`")
                } catch let plain where exitCode(for: plain) != .success {
                    reported = plain
                } catch {}
            }
            exit(oneLine: reported, arguments: given)
        }
        do {
            try command.run()
        } catch {
            exit(oneLine: error, arguments: given)
        }
    }

    static func movingNetnsLast(_ arguments: [String]) -> [String] {
        var rest = arguments
        if rest.count >= 2, rest[0] == "--netns" {
            let name = rest[1]
            rest.removeFirst(2)
            return rest + ["--netns", name]
        }
        if let first = rest.first, first.hasPrefix("--netns=") {
            rest.removeFirst()
            return rest + [first]
        }
        return rest
    }

    /// `--cgroup` with no path (last, or followed by another option) means the
    /// unified hierarchy's root. An `@Option var cgroup: String?` is optional as an
    /// option, but once given it takes a value: ArgumentParser cannot read a bare
    /// `--cgroup` and `--cgroup PATH` as one option, so the bare one gets a
    /// placeholder value here.
    static func fillingBareCgroup(_ arguments: [String]) -> [String] {
        var result: [String] = []
        for (i, argument) in arguments.enumerated() {
            result.append(argument)
            if argument == "--cgroup", i + 1 == arguments.count || arguments[i + 1].hasPrefix("-") {
                result.append(Attach.rootCgroup)
            }
        }
        return result
    }

    static func withoutNetns(_ arguments: [String]) -> [String] {
        if arguments.count >= 2, arguments[0] == "--netns" { return Array(arguments.dropFirst(2)) }
        if let first = arguments.first, first.hasPrefix("--netns=") { return Array(arguments.dropFirst()) }
        return arguments
    }

    /// Help and version go to stdout as usual; an error is one line on stderr with a
    /// pointer to the command's help; the exit code is ArgumentParser's (64 for
    /// usage errors, the code of an `ExitCode`, 1 otherwise).
    static func exit(oneLine error: Error, arguments: [String]) -> Never {
        let code = exitCode(for: error)
        if code == .success || error is ExitCode { exit(withError: error) }
        let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: "; ")
        let path = (["ppctl"] + commandPath(withoutNetns(arguments))).joined(separator: " ")
        let hint = code == .validationFailure ? " (see `\(path) --help`)" : ""
        FileHandle.standardError.write(Data("error: \(message)\(hint)\n".utf8))
        Foundation.exit(code.rawValue)
    }

    /// The subcommand names at the start of `arguments` ("service", "add").
    static func commandPath(_ arguments: [String]) -> [String] {
        var path: [String] = []
        var command: ParsableCommand.Type = PPCtl.self
        for argument in arguments {
            guard let next = command.configuration.subcommands.first(where: { $0._commandName == argument }) else { break }
            path.append(argument)
            command = next
        }
        return path
    }
}
