/// Why a header was rejected. Every case names one class of invalid input.
public enum ProxyProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    // MARK: Both versions
    /// The bytes start with neither the v2 signature nor "PROXY ".
    case badSignature
    /// The header is of a version the decoder was configured not to accept.
    case versionNotAccepted(ProxyHeader.Version)

    // MARK: v2
    /// The high nibble of byte 13 is not 2.
    case unsupportedVersion(UInt8)
    /// The low nibble of byte 13 is neither LOCAL (0) nor PROXY (1).
    case invalidCommand(UInt8)
    /// Byte 14 is not one of 00, 11, 12, 21, 22, 31, 32.
    case unknownFamily(UInt8)
    /// The length field is smaller than the family's address block.
    case lengthTooShortForFamily(family: UInt8, length: Int)
    /// The header is longer than the configured limit.
    case headerTooLong(length: Int, limit: Int)
    /// Fewer than 3 bytes remain for a TLV header (a TLV ending short of the end).
    case truncatedTLVHeader(offset: Int)
    /// A TLV's value runs past the end of the header.
    case tlvOverrunsHeader(type: UInt8, length: Int)
    /// A TLV value is longer than the configured limit.
    case tlvTooLong(type: UInt8, length: Int, limit: Int)
    /// A UNIQUE_ID TLV is longer than 128 bytes.
    case uniqueIDTooLong(Int)
    /// A CRC32C TLV whose length is not 4.
    case badCRC32CLength(Int)
    /// The CRC32C TLV does not match the header.
    case crc32cMismatch(expected: UInt32, actual: UInt32)
    /// The SSL TLV does not parse (reported by `ProxyHeader.ssl()`).
    case malformedSSL(String)

    // MARK: v1
    /// No CRLF within the first 107 bytes.
    case v1MissingCRLF
    /// A CR not followed by LF, or an LF not preceded by CR, inside the line.
    case v1BareCROrLF
    /// A byte that has no place in a v1 line (control character, non-ASCII).
    case v1InvalidCharacter(UInt8)
    /// Not "PROXY" followed by the right number of single-space separated fields.
    case v1WrongFieldCount(Int)
    /// The protocol is not TCP4, TCP6 or UNKNOWN.
    case v1UnknownProtocol(String)
    /// An address that is not valid text for its family.
    case v1InvalidAddress(String)
    /// An address of the other family (an IPv6 address with TCP4, or the reverse).
    case v1FamilyMismatch(String)
    /// A port or IPv4 octet written with a leading zero.
    case v1LeadingZero(String)
    /// A port that is not a decimal number in 0...65535 (signs included).
    case v1InvalidPort(String)

    // MARK: Encoding
    /// The header cannot be written as asked (v1 with TLVs, a value too long, ...).
    case cannotEncode(String)

    public var description: String {
        switch self {
        case .badSignature: return "no PROXY protocol signature"
        case .versionNotAccepted(let v): return "PROXY v\(v.rawValue) header not accepted here"
        case .unsupportedVersion(let v): return "unsupported v2 version nibble \(v)"
        case .invalidCommand(let c): return "invalid v2 command \(c) (expected 0 LOCAL or 1 PROXY)"
        case .unknownFamily(let f): return "unknown v2 address family/transport 0x\(hex(f))"
        case .lengthTooShortForFamily(let f, let l): return "length \(l) too short for family 0x\(hex(f))"
        case .headerTooLong(let l, let limit): return "header of \(l) bytes exceeds the limit of \(limit)"
        case .truncatedTLVHeader(let o): return "TLV header truncated at offset \(o)"
        case .tlvOverrunsHeader(let t, let l): return "TLV 0x\(hex(t)) of length \(l) runs past the end of the header"
        case .tlvTooLong(let t, let l, let limit): return "TLV 0x\(hex(t)) of \(l) bytes exceeds the limit of \(limit)"
        case .uniqueIDTooLong(let l): return "UNIQUE_ID of \(l) bytes exceeds 128"
        case .badCRC32CLength(let l): return "CRC32C TLV of length \(l) (must be 4)"
        case .crc32cMismatch(let e, let a):
            return "CRC32C mismatch: header says \(String(a, radix: 16)), computed \(String(e, radix: 16))"
        case .malformedSSL(let why): return "malformed SSL TLV: \(why)"
        case .v1MissingCRLF: return "v1 line without CRLF within 107 bytes"
        case .v1BareCROrLF: return "v1 line with a bare CR or LF"
        case .v1InvalidCharacter(let c): return "v1 line with invalid byte 0x\(hex(c))"
        case .v1WrongFieldCount(let n): return "v1 line with \(n) fields"
        case .v1UnknownProtocol(let p): return "v1 protocol '\(p)' is not TCP4, TCP6 or UNKNOWN"
        case .v1InvalidAddress(let a): return "v1 address '\(a)' is not valid"
        case .v1FamilyMismatch(let a): return "v1 address '\(a)' does not match the protocol"
        case .v1LeadingZero(let f): return "v1 field '\(f)' has a leading zero"
        case .v1InvalidPort(let p): return "v1 port '\(p)' is not in 0...65535"
        case .cannotEncode(let why): return "cannot encode: \(why)"
        }
    }
}
