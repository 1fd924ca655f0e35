import Testing
@testable import SluiceCore

@Suite("LSN")
struct LSNTests {
    @Test func parsesServerForm() throws {
        let lsn = try #require(LSN("16/B374D848"))
        #expect(lsn.rawValue == 0x16_B374_D848)
        #expect(lsn.description == "16/B374D848")
    }

    @Test func zero() throws {
        let lsn = try #require(LSN("0/0"))
        #expect(lsn.rawValue == 0)
        #expect(lsn == LSN.zero)
        #expect(LSN.zero.description == "0/0")
    }

    @Test func lowerCaseHexIsAccepted() throws {
        let lsn = try #require(LSN("16/b374d848"))
        #expect(lsn.rawValue == 0x16_B374_D848)
        #expect(lsn.description == "16/B374D848")
    }

    @Test func largestValue() throws {
        let lsn = try #require(LSN("FFFFFFFF/FFFFFFFF"))
        #expect(lsn.rawValue == UInt64.max)
        #expect(lsn.description == "FFFFFFFF/FFFFFFFF")
    }

    @Test(arguments: [0, 1, 0xFF, 0x1_0000_0000, 0x16_B374_D848, 0xDEAD_BEEF_0000_0001, UInt64.max])
    func descriptionRoundTrips(raw: UInt64) throws {
        let text = LSN(raw).description
        let parsed = try #require(LSN(text))
        #expect(parsed.rawValue == raw)
    }

    @Test(arguments: ["", "1", "x/1", "1/x", "1/2/3", "123456789/0", "0/123456789", "/1", "1/", "/", " 1/2", "1/2 ", "-1/2"])
    func rejectsInvalid(text: String) {
        #expect(LSN(text) == nil)
    }

    @Test func ordering() throws {
        let a = try #require(LSN("0/FFFFFFFF"))
        let b = try #require(LSN("1/0"))
        let c = try #require(LSN("16/B374D848"))
        #expect(a < b)
        #expect(b < c)
        #expect(!(c < a))
        #expect(max(a, c) == c)
        #expect([c, a, b].sorted() == [a, b, c])
        #expect(LSN(5) == LSN(rawValue: 5))
    }
}
