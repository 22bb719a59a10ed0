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

        @OptionGroup var instance: InstanceOptions

        @Argument(help: ArgumentHelp("The file (- for stdin).", valueName: "FILE"))
        var file: String

        func specs() throws -> [ServiceSpec] {
            let text: String
            if file == "-" {
                text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
                text = String(decoding: data, as: UTF8.self)
            }
            var specs: [ServiceSpec] = []
            for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                let args = trimmed.split(whereSeparator: \.isWhitespace).map(String.init)
                do {
                    let arguments = try ServiceArguments.quickParse(args) ?? Add.parse(args).arguments
                    specs.append(try arguments.spec())
                } catch {
                    throw ValidationError("line \(number + 1): \(Add.message(for: error))")
                }
            }
            return specs
        }

        func run() throws {
            let specs = try specs()
            let inst = try instance.instance()
            try ppctl.run { try inst.withLock { try Controller(ServiceTables(Maps(inst))).addServices(specs) } }
            print("added \(specs.count) service\(specs.count == 1 ? "" : "s")")
        }
    }
}
