// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "ppctl",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "ProxyProtocol", targets: ["ProxyProtocol"]),
        .executable(name: "ppctl", targets: ["ppctl"]),
        .executable(name: "ppctld", targets: ["ppctld"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2")
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

        // The libbpf skeletons of bpf/lb_tc.bpf.c and bpf/lb_sock.bpf.c (bpftool gen
        // skeleton, checked by bpf/build.sh) and the C shim that opens them over the
        // objects Datapath embeds: programs and maps by field, not by name.
        .target(name: "DatapathSkeletons", dependencies: ["CLibbpf"]),

        // The libbpf binding: loads the embedded eBPF objects, attaches, pins, typed maps.
        .target(
            name: "Datapath",
            dependencies: ["CLibbpf", "DatapathABI", "DatapathSkeletons"],
            plugins: ["BPFObjectsPlugin"]
        ),

        // Services, endpoints, validation and endpoint choice as plain values.
        .target(name: "Balancer", dependencies: ["Datapath", "DatapathABI", "ProxyProtocol"]),

        .executableTarget(
            name: "ppctl",
            dependencies: [
                "ProxyProtocol", "Balancer", "Datapath", "DatapathABI",
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ]
        ),

        // The balancer as a service: a YAML file reconciled into the maps, reloads,
        // structured logs and /metrics (docs/config.md).
        .executableTarget(
            name: "ppctld",
            dependencies: [
                "Balancer", "Datapath", "DatapathABI", "ProxyProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Yams", package: "Yams")
            ],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),

        // Release-mode codec benchmark: `swift run -c release ppctl-codec-bench`.
        .executableTarget(name: "ppctl-codec-bench", dependencies: ["ProxyProtocol"]),

        // Compiles bpf/*.bpf.c with clang -target bpf and embeds the objects in Datapath.
        .plugin(name: "BPFObjectsPlugin", capability: .buildTool()),

        .testTarget(name: "ProxyProtocolTests", dependencies: ["ProxyProtocol"]),
        // Test doubles of the map layer, after swift-nio's NIOEmbedded: InMemoryMap and
        // ServiceTables.inMemory(), for unit tests without root. Only tests depend on it.
        .target(name: "DatapathTesting", dependencies: ["Balancer", "Datapath", "DatapathABI"]),

        // The CLI's parsing, without root: typed arguments, --netns anywhere, the
        // `service apply` reader against `service add`'s rules.
        .testTarget(
            name: "PPCtlTests",
            dependencies: [
                "ppctl", "Balancer", .product(name: "ArgumentParser", package: "swift-argument-parser")
            ]),
        // ppctld's file parsing and the bird text it generates, without root
        // (`@testable import ppctld`: SwiftPM builds executables testable in debug).
        .testTarget(
            name: "PPCtlDTests", dependencies: ["ppctld", "Balancer", "ProxyProtocol", .product(name: "Logging", package: "swift-log")],
            swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "BalancerTests", dependencies: ["Balancer", "Datapath", "DatapathABI", "DatapathTesting", "ProxyProtocol"]),
        // Root tests in network namespaces. The plugin embeds the test-only eBPF
        // programs of bpf/testing (the fault injector) in this target.
        .target(name: "FaultABI", dependencies: ["CLibbpf", "DatapathSkeletons"], path: "Tests/FaultABI"),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["ProxyProtocol", "Balancer", "Datapath", "DatapathABI", "CLibbpf", "FaultABI"],
            exclude: ["Scripts", "Peers"],  // run and read by the tests from their source path
            swiftSettings: [.swiftLanguageMode(.v5)],
            plugins: ["BPFObjectsPlugin"]
        )
    ]
)
