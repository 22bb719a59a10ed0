import Balancer
import XCTest

/// `VIP:PORT`, `IP:PORT[,weight=N]`: every form ppctl accepts, and the ones it refuses
/// with a message naming the value.
final class EndpointParsingTests: XCTestCase {
    func testParsesIPv4AndBracketedIPv6() throws {
        XCTAssertEqual(try Endpoint(parsing: "198.18.0.10:80").description, "198.18.0.10:80")
        XCTAssertEqual(try Endpoint(parsing: "198.18.0.10:1").port, 1)
        XCTAssertEqual(try Endpoint(parsing: "198.18.0.10:65535").port, 65535)
        XCTAssertEqual(try Endpoint(parsing: "[2001:2::10]:443").description, "[2001:2::10]:443")
        let v6 = try Endpoint(parsing: "[2001:2:0:0:0:0:0:10]:443")
        XCTAssertEqual(v6, try Endpoint(parsing: "[2001:2::10]:443"), "IPv6 text is read, not compared as text")
        guard case .v6 = v6.address else { return XCTFail("IPv6 address") }
    }

    func testRejectsMalformedEndpointsNamingThem() {
        let bad = [
            "", ":", "198.18.0.10", "198.18.0.10:", "198.18.0.10:0", "198.18.0.10:65536",
            "198.18.0.10:99999999999999999999", "198.18.0.10:+80", "198.18.0.10:-1", "198.18.0.10:8 0",
            " 198.18.0.10:80", "198.18.0.10:80 ", "198.18.0.010:80", "198.18.0:80", "198.18.0.1.2:80",
            "256.0.0.1:80", "198.18.0.10:http", "2001:2::10:80", "[2001:2::10]80", "[2001:2::10]:",
            "[2001:2::10", "[nope]:80", "[198.18.0.10]:80", ":80", "host:80", "198.18.0.10:80,weight=2"
        ]
        for text in bad {
            XCTAssertThrowsError(try Endpoint(parsing: text), "'\(text)' must be refused") { error in
                guard case .malformedEndpoint(let named, _) = error as? BalancerError else {
                    return XCTFail("'\(text)': \(error)")
                }
                XCTAssertEqual(named, text, "the message names the text")
            }
        }
    }

    func testMessagesSayWhatIsWrong() {
        func message(_ text: String) -> String {
            do {
                _ = try Backend(parsing: text)
                return ""
            } catch { return "\(error)" }
        }
        XCTAssertEqual(message("198.18.2.2:0"), "invalid endpoint '198.18.2.2:0': port '0' is not in 1...65535")
        XCTAssertEqual(message("198.18.2.256:80"), "invalid endpoint '198.18.2.256:80': '198.18.2.256' is not an IP address")
        XCTAssertEqual(
            message("198.18.2.2:80,weight=0"),
            "invalid endpoint '198.18.2.2:80,weight=0': weight '0' is not a number in 1...10000")
        XCTAssertEqual(
            message("198.18.2.2:80,color=red"),
            "invalid endpoint '198.18.2.2:80,color=red': unknown backend option 'color=red' (expected weight=N)")
    }

    func testBackendWeights() throws {
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080").weight, 1)
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080,weight=1").weight, 1)
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080,weight=7").weight, 7)
        XCTAssertEqual(try Backend(parsing: "198.18.2.2:8080,weight=10000").weight, 10_000)
        XCTAssertEqual(try Backend(parsing: "[2001:2::2]:8080,weight=5").weight, 5)
        for bad in [
            "198.18.2.2:8080,weight=0", "198.18.2.2:8080,weight=10001", "198.18.2.2:8080,weight=",
            "198.18.2.2:8080,weight=x", "198.18.2.2:8080,weight=+5", "198.18.2.2:8080,weight=-1",
            "198.18.2.2:8080,weight=1.5", "198.18.2.2:8080,weight=99999999999999999999",
            "198.18.2.2:8080,w=2", "198.18.2.2:8080,", "198.18.2.2:8080,weight=2,weight=3",
            "198.18.2.2:8080,,weight=2", ",weight=2"
        ] {
            XCTAssertThrowsError(try Backend(parsing: bad), bad)
        }
    }
}
