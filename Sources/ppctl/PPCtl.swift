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
        subcommands: [
            Attach.self, Detach.self, Service.self, BackendCommand.self, Conntrack.self,
            Stats.self, Header.self
        ]
    )

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Act on the balancer in network namespace /run/netns/NAME (ppctl enters it itself; its pins are kept per namespace). It may come anywhere on the line.",
            valueName: "name"))
    var netns: String?

    /// Parses and runs the command. Errors are one line on stderr, `error: ...`.
    static func main() {
        let given = Array(CommandLine.arguments.dropFirst())
        var command: ParsableCommand
        do {
            command = try parseAsRoot(fillingBareCgroup(given))
        } catch {
            exit(oneLine: error, arguments: given)
        }
        do {
            try command.run()
        } catch {
            exit(oneLine: error, arguments: given)
        }
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

    /// Help and version go to stdout as usual; an error is one line on stderr with a
    /// pointer to the command's help; the exit code is ArgumentParser's (64 for
    /// usage errors, the code of an `ExitCode`, 1 otherwise).
    static func exit(oneLine error: Error, arguments: [String]) -> Never {
        let code = exitCode(for: error)
        if code == .success || error is ExitCode { exit(withError: error) }
        let message = message(for: error).split(whereSeparator: \.isNewline).joined(separator: "; ")
        let path = (["ppctl"] + commandPath(arguments)).joined(separator: " ")
        let hint = code == .validationFailure ? " (see `\(path) --help`)" : ""
        FileHandle.standardError.write(Data("error: \(message)\(hint)\n".utf8))
        Foundation.exit(code.rawValue)
    }

    /// The subcommand names of `arguments` ("service", "add"), skipping `--netns NAME`.
    static func commandPath(_ arguments: [String]) -> [String] {
        var path: [String] = []
        var command: ParsableCommand.Type = PPCtl.self
        var words = arguments[...]
        while let word = words.popFirst() {
            if word == "--netns" {
                _ = words.popFirst()
                continue
            }
            if word.hasPrefix("--netns=") { continue }
            guard let next = command.configuration.subcommands.first(where: { $0._commandName == word }) else { break }
            path.append(word)
            command = next
        }
        return path
    }
}
