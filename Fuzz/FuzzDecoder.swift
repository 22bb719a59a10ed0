// libFuzzer entry point for the PROXY decoder; built by scripts/fuzz together with
// Sources/ProxyProtocol/*.swift (`swiftc -sanitize=fuzzer,address -parse-as-library`).
// Properties checked on every input, besides not crashing:
// - a decoded header never consumes more than it was given;
// - a decoded header re-encodes, and that encoding decodes to the same header;
// - every prefix of a decoded header is "need more data".

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDecoder(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    var config = ProxyDecoder.Configuration()
    config.maxHeaderLength = 65551
    config.maxTLVValueLength = 65535
    let decoder = ProxyDecoder(configuration: config)
    guard case .header(let header, let consumed) = decoder.decode(input) else { return 0 }
    precondition(consumed <= input.count, "consumed past the input")
    for cut in stride(from: 1, to: consumed, by: max(1, consumed / 16)) {
        guard case .needMoreData = decoder.decode(Array(input[..<cut])) else {
            preconditionFailure("prefix of \(cut) bytes of a \(consumed)-byte header was not need-more")
        }
    }
    // LOCAL headers drop their addresses on encode, and v1 UNKNOWN ignores the rest.
    guard header.command == .proxy, let again = try? header.encoded() else { return 0 }
    var lenient = config
    lenient.verifyCRC32C = false     // the CRC TLV is copied as it was, not recomputed
    guard case .header(let decoded, _) = ProxyDecoder(configuration: lenient).decode(again) else {
        preconditionFailure("re-encoded header does not decode")
    }
    precondition(decoded == header, "re-encoded header decodes differently")
    return 0
}
