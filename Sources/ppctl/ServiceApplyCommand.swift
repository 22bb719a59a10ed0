import ArgumentParser
import Balancer
import Datapath
import Foundation

extension Service {
    struct Apply: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add many services from a file, all or none.",
            discussion: """
                Each non-empty line not starting with # holds the arguments of one `service add`, e.g.
                  198.18.0.10:80 --proxyv2 --backend 198.18.2.2:8080 --backend 198.18.2.3:8080
                Every line is validated before anything is written, and the services are written \
                as one transaction: if a write fails, every write before it is undone.
                """)

        @ParentCommand var root: PPCtl

        @Argument(help: ArgumentHelp("The file (- for stdin).", valueName: "FILE"))
        var file: String

        /// The services of the file with their line numbers, each line validated as
        /// `service add` would, and no VIP twice. Throws ValidationError naming the line.
        func specs() throws -> [(line: Int, spec: ServiceSpec)] {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                text = String(decoding: data, as: UTF8.self)
            }
            var specs: [(line: Int, spec: ServiceSpec)] = []
            var lineOf: [Endpoint: Int] = [:]
            // "\r\n" is one Character, and a newline: CRLF files read like LF files.
            for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
                let number = index + 1
                do {
                    guard let spec = try Self.spec(line) else { continue }
                    if let first = lineOf[spec.vip] {
                        throw ValidationError("service \(spec.vip) is given twice (first on line \(first))")
                    }
                    lineOf[spec.vip] = number
                    specs.append((number, spec))
                } catch {
                    throw ValidationError("line \(number): \(Add.message(for: error))")
                }
            }
            return specs
        }

        /// The service one line describes, or nil for a blank or comment line. Words
        /// are separated by blanks; a word starting with `#` starts a comment that
        /// runs to the end of the line. Options other than `service add`'s (such as
        /// --netns) and NUL bytes are refused.
        static func spec(_ line: Substring) throws -> ServiceSpec? {
            guard !line.contains("\0") else { throw ValidationError("the line holds a NUL byte (\\0)") }
            let words = line.split(whereSeparator: \.isWhitespace).prefix { !$0.hasPrefix("#") }.map(String.init)
            if words.isEmpty { return nil }
            if let quick = ServiceArguments.quickParse(words) { return try quick.spec() }
            // Parsed as the whole command `service add WORDS`, so that the root's
            // options are known, and refused.
            guard let add = try PPCtl.parseAsRoot(["service", "add"] + words) as? Add else {
                throw ValidationError("the line is not the arguments of `service add`")
            }
            if add.root.netns != nil {
                throw ValidationError("--netns does not belong in a line; give it to `ppctl service apply` itself")
            }
            return try add.arguments.spec()
        }

        func run() throws {
            let specs = try specs()
            let inst = try root.instance()
            try ppctl.run {
                try inst.withLock(needsPins: true) {
                    let controller = try Controller(opening: inst)
                    if let (line, spec) = specs.first(where: { controller.exists($0.spec.vip) }) {
                        throw InputLineError(line: line, error: BalancerError.serviceExists(spec.vip.description))
                    }
                    try controller.addServices(specs.map(\.spec))
                }
            }
            print("added \(specs.count) service\(specs.count == 1 ? "" : "s")")
        }
    }
}

/// An error about one line of an input file: `line N: ...`.
struct InputLineError: Error, CustomStringConvertible {
    var line: Int
    var error: Error

    var description: String { "line \(line): \(error)" }
}
