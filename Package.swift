// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "ppctl",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ProxyProtocol", targets: ["ProxyProtocol"]),
        .executable(name: "ppctl", targets: ["ppctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // The PROXY protocol codec: no dependencies, used by the CLI, the tests and
        // by Swift servers that sit behind ppctl.
        .target(name: "ProxyProtocol"),

        // libbpf from Debian's libbpf-dev, as a system library.
        .systemLibrary(name: "CLibbpf", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev"])]),

        // The structs shared with the eBPF programs (bpf/include/ppctl_abi.h) and small C
        // shims (setns, mount) that Swift cannot call directly.
        .target(name: "DatapathABI"),

        // The libbpf binding: loads the embedded eBPF objects, attaches, pins, typed maps.
        .target(
            name: "Datapath",
            dependencies: ["CLibbpf", "DatapathABI"],
            plugins: ["BPFObjectsPlugin"]
        ),

        // Services, endpoints, validation and endpoint choice as plain values.
        .target(name: "Balancer", dependencies: ["Datapath", "DatapathABI", "ProxyProtocol"]),

        .executableTarget(
            name: "ppctl",
            dependencies: [
                "ProxyProtocol", "Balancer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Release-mode codec benchmark: `swift run -c release ppctl-codec-bench`.
        .executableTarget(name: "ppctl-codec-bench", dependencies: ["ProxyProtocol"]),

        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the objects in Datapath.
        .plugin(name: "BPFObjectsPlugin", capability: .buildTool()),

        .testTarget(name: "ProxyProtocolTests", dependencies: ["ProxyProtocol"]),
        .testTarget(name: "BalancerTests", dependencies: ["Balancer"]),
        // Root tests in network namespaces. The plugin embeds the test-only eBPF
        // programs of bpf/testing (the fault injector) in this target.
        .target(name: "FaultABI", path: "Tests/FaultABI"),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ProxyProtocol", "Balancer", "Datapath", "DatapathABI", "CLibbpf", "FaultABI"],
            swiftSettings: [.swiftLanguageMode(.v5)],
            plugins: ["BPFObjectsPlugin"]
        ),
    ]
)
