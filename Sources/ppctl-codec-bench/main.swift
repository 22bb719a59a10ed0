// Release-mode benchmark of the PROXY codec:
//   swift run -c release ppctl-codec-bench
// Each case runs in rounds of many iterations; the best round is reported, in
// nanoseconds per operation (CRC32C in GB/s).
import ProxyProtocol
#if canImport(Glibc)
    import Glibc
#endif

@inline(never)
func blackHole<T>(_ value: T) { withExtendedLifetime(value) {} }

func measure(_ name: String, iterations: Int = 1_000_000, rounds: Int = 7, _ body: () -> Void) -> Double {
    var best = Double.infinity
    let clock = ContinuousClock()
    for _ in 0..<rounds {
        let elapsed = clock.measure { for _ in 0..<iterations { body() } }
        let ns = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
        best = min(best, ns / Double(iterations))
    }
    let padded = name.padding(toLength: 44, withPad: " ", startingAt: 0)
    print("\(padded) \(fmt(best)) ns/op")
    return best
}

extension String {
    func padding(toLength n: Int, withPad pad: String, startingAt: Int) -> String {
        count >= n ? self : self + String(repeating: pad, count: n - count)
    }
}

func fmt(_ value: Double) -> String {
    let text = "\((value * 10).rounded() / 10)"
    return String(repeating: " ", count: max(0, 8 - text.count)) + text
}

let v4 = ProxyHeader(
    addresses: .ipv4(
        source: IPv4Address(198, 18, 1, 2), sourcePort: 43976,
        destination: IPv4Address(198, 18, 0, 10), destinationPort: 80, transport: .stream))
let v6 = ProxyHeader(
    addresses: .ipv6(
        source: IPv6Address("2001:2::1")!, sourcePort: 43976,
        destination: IPv6Address("2001:2::10")!, destinationPort: 443, transport: .stream))
var v4tlv = v4
v4tlv.tlvs = [.authority("example.com"), .uniqueID(Array("0123456789abcdef".utf8)), ProxyTLV(type: 0xE5, value: Array("tenant-42".utf8))]
var v6tlv = v6
v6tlv.tlvs = v4tlv.tlvs
var v1v4 = v4
v1v4.version = .v1
var v1v6 = v6
v1v6.version = .v1

let decoder = ProxyDecoder()
print("PROXY codec, best of 7 rounds")
for (name, header) in [
    ("v2 IPv4", v4), ("v2 IPv4 + 3 TLVs", v4tlv), ("v2 IPv6", v6), ("v2 IPv6 + 3 TLVs", v6tlv),
    ("v1 IPv4", v1v4), ("v1 IPv6", v1v6)
] {
    let bytes = try! header.encoded()
    _ = measure("decode \(name)") { blackHole(decoder.decode(bytes)) }
    var buffer: [UInt8] = []
    buffer.reserveCapacity(512)
    _ = measure("encode \(name)") {
        buffer.removeAll(keepingCapacity: true)
        try! header.encode(into: &buffer)
        blackHole(buffer.count)
    }
}
let withCRC = try! v4tlv.encoded(crc32c: true)
_ = measure("decode v2 IPv4 + 3 TLVs + CRC32C") { blackHole(decoder.decode(withCRC)) }

let block = [UInt8](repeating: 0xA5, count: 64 * 1024)
let perBlock = measure("CRC32C 64 KiB", iterations: 2000) { blackHole(CRC32C.checksum(block)) }
print("CRC32C throughput: \(fmt(Double(block.count) / perBlock)) GB/s")
