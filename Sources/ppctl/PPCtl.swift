import ArgumentParser

@main
struct PPCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ppctl",
        abstract: "An eBPF load balancer that gives backends the client's address in a PROXY protocol header.",
        discussion: """
            Exit codes: 0 success, 1 the operation failed, 64 invalid arguments, 77 not root.
            Pinned state lives under $PPCTL_PIN_ROOT (default /sys/fs/bpf/ppctl)/<instance>.
            `ppctl --netns NAME <command> ...` works on the balancer in /run/netns/NAME.
            """,
        version: "0.1.0",
        subcommands: [Attach.self, Detach.self, Service.self, BackendCommand.self, Conntrack.self,
                      Stats.self, Header.self]
    )

    /// `ppctl --netns NAME <command> ...` is read as `ppctl <command> ... --netns NAME`,
    /// so that the namespace can come first, as with `ip -n`.
    static func main() {
        var arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.count >= 2, arguments[0] == "--netns" {
            let name = arguments[1]
            arguments.removeFirst(2)
            arguments += ["--netns", name]
        } else if let first = arguments.first, first.hasPrefix("--netns=") {
            arguments.removeFirst()
            arguments.append(first)
        }
        main(arguments)
    }
}
