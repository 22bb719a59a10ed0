import Balancer
import Foundation

/// `ppctl service list -o json`, one object per service (docs/cli.md). Every key is
/// always present (`snat` is the service's SNAT pool, empty when it has none;
/// `owner` is `cli` or `ppctld`; `tableSize` is the size of its Maglev table,
/// `tableSizeFixed` whether `--table-size` chose it).
struct ServiceJSON: Encodable {
    struct BackendJSON: Encodable {
        let address: String
        let port: UInt16
        let weight: Int
    }
    struct TLVJSON: Encodable {
        let type: UInt8
        let name: String
        let hex: String
    }
    let vip: String, address: String, port: UInt16, proxy: String, owner: String
    let snat: [String], uniqueID: Bool, crc32c: Bool, serverFirst: Bool, tlvs: [TLVJSON], backends: [BackendJSON]
    let tableSize: Int, tableSizeFixed: Bool

    enum CodingKeys: String, CodingKey {
        case vip, address, port, proxy, owner, snat, uniqueID, crc32c, serverFirst, tableSize, tableSizeFixed, tlvs, backends
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vip, forKey: .vip)
        try c.encode(address, forKey: .address)
        try c.encode(port, forKey: .port)
        try c.encode(proxy, forKey: .proxy)
        try c.encode(owner, forKey: .owner)
        try c.encode(snat, forKey: .snat)
        try c.encode(uniqueID, forKey: .uniqueID)
        try c.encode(crc32c, forKey: .crc32c)
        try c.encode(serverFirst, forKey: .serverFirst)
        try c.encode(tableSize, forKey: .tableSize)
        try c.encode(tableSizeFixed, forKey: .tableSizeFixed)
        try c.encode(tlvs, forKey: .tlvs)
        try c.encode(backends, forKey: .backends)
    }

    init(_ v: ServiceView) {
        vip = v.spec.vip.description
        address = v.spec.vip.address.description
        port = v.spec.vip.port
        proxy = v.spec.proxy.rawValue
        owner = v.owner.description
        snat = v.spec.snat.map(\.description)
        uniqueID = v.spec.uniqueID
        crc32c = v.spec.crc32c
        serverFirst = v.spec.serverFirst
        tableSize = v.spec.maglevSize
        tableSizeFixed = v.spec.tableSize != nil
        tlvs = v.spec.tlvs.map { TLVJSON(type: $0.type, name: $0.name, hex: $0.value.map { String(format: "%02x", $0) }.joined()) }
        backends = v.spec.backends.map { BackendJSON(address: $0.endpoint.address.description, port: $0.endpoint.port, weight: $0.weight) }
    }
}
