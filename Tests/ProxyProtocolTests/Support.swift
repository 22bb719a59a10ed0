import ProxyProtocol

/// A seeded generator (SplitMix64) so that property tests reproduce.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func bytes(hex: String) -> [UInt8] {
    let digits = hex.filter { !$0.isWhitespace }
    var out: [UInt8] = []
    var i = digits.startIndex
    while i < digits.endIndex {
        let j = digits.index(i, offsetBy: 2)
        out.append(UInt8(digits[i..<j], radix: 16)!)
        i = j
    }
    return out
}

func decodeError(_ input: [UInt8], _ config: ProxyDecoder.Configuration = .init()) -> ProxyProtocolError? {
    if case .invalid(let e) = ProxyDecoder(configuration: config).decode(input) { return e }
    return nil
}

func decodeHeader(_ input: [UInt8]) -> (ProxyHeader, Int)? {
    if case .header(let h, let n) = ProxyDecoder().decode(input) { return (h, n) }
    return nil
}

func v2(_ versionCommand: UInt8, _ family: UInt8, body: [UInt8]) -> [UInt8] {
    proxyV2Signature + [versionCommand, family, UInt8(body.count >> 8), UInt8(body.count & 0xff)] + body
}

let ipv4Body: [UInt8] = [198, 18, 1, 2, 198, 18, 0, 10, 0xAB, 0xC8, 0x00, 0x50]
