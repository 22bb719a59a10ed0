import Foundation
import PackagePlugin

/// Compiles the eBPF programs in bpf/ with clang -target bpf and hands the target a
/// generated Swift file that embeds the objects, so that `ppctl` alone is enough at
/// run time. The work is done by bpf/build.sh, which scripts can call as well.
@main
struct BPFObjectsPlugin: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpf = context.package.directoryURL.appending(path: "bpf")
        // Test targets get the test-only programs (the fault injector); the
        // datapath gets bpf/*.bpf.c.
        let isTest = target.name.hasSuffix("Tests")
        let sourceDir = isTest ? bpf.appending(path: "testing") : bpf
        let enumName = isTest ? "TestBPFObjectBytes" : "BPFObjectBytes"
        let output = context.pluginWorkDirectoryURL.appending(path: "\(enumName).swift")
        let objects = context.pluginWorkDirectoryURL.appending(path: "objects")
        return [
            .buildCommand(
                displayName: "Compiling eBPF programs in \(sourceDir.lastPathComponent)/",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [
                    bpf.appending(path: "build.sh").path, output.path, objects.path,
                    sourceDir.path, enumName,
                ],
                inputFiles: try sources(under: bpf),
                outputFiles: [output]
            )
        ]
    }

    /// Every file under bpf/: a change to any of them rebuilds the objects.
    private func sources(under directory: URL) throws -> [URL] {
        guard let walker = FileManager.default.enumerator(
            at: directory, includingPropertiesForKeys: [.isRegularFileKey]
        ) else { return [] }
        var files: [URL] = []
        for case let url as URL in walker
        where (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true {
            files.append(url)
        }
        return files.sorted { $0.path < $1.path }
    }
}
