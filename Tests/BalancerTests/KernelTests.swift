import Datapath
import XCTest

/// The kernel check of `attach` (Kernel.swift), without root: releases as `uname -r`
/// prints them.
final class KernelTests: XCTestCase {
    func testReleasesParseToMajorAndMinor() {
        XCTAssertEqual(Kernel.version(release: "6.1.0-18-amd64"), Kernel.Version(6, 1))
        XCTAssertEqual(Kernel.version(release: "6.18.44-fc-v669"), Kernel.Version(6, 18))
        XCTAssertEqual(Kernel.version(release: "6.7"), Kernel.Version(6, 7))
        XCTAssertEqual(Kernel.version(release: "6.10.0-rc3+"), Kernel.Version(6, 10))
        XCTAssertEqual(Kernel.version(release: "5.15.0-91-generic"), Kernel.Version(5, 15))
        XCTAssertNil(Kernel.version(release: ""))
        XCTAssertNil(Kernel.version(release: "6"))
        XCTAssertNil(Kernel.version(release: "linux-6.7"))
        XCTAssertLessThan(Kernel.Version(6, 6), Kernel.Version(6, 7))
        XCTAssertLessThan(Kernel.Version(5, 19), Kernel.Version(6, 0))
        XCTAssertLessThan(Kernel.Version(6, 9), Kernel.Version(6, 10), "numbers, not text")
    }

    func testOlderKernelsAreRefusedNamingTheRelease() {
        XCTAssertThrowsError(try Kernel.check(release: "6.1.0-18-amd64", environment: [:])) { error in
            XCTAssertEqual(error as? DatapathError, .kernelTooOld(release: "6.1.0-18-amd64", minimum: "6.7"))
            XCTAssertTrue("\(error)".contains("Linux 6.1.0-18-amd64 is too old"), "\(error)")
            XCTAssertTrue("\(error)".contains("6.7 or later"), "\(error)")
        }
        XCTAssertThrowsError(try Kernel.check(release: "6.6.30", environment: [:]))
        XCTAssertNoThrow(try Kernel.check(release: "6.7.0", environment: [:]))
        XCTAssertNoThrow(try Kernel.check(release: "7.0.1", environment: [:]))
        XCTAssertNoThrow(try Kernel.check(release: "unknown", environment: [:]), "what does not parse passes")
        XCTAssertNoThrow(try Kernel.check(release: "6.1.0", environment: [Kernel.skipVariable: "1"]))
        XCTAssertNoThrow(try Kernel.check(), "the kernel these tests run on: \(Kernel.release())")
    }
}
