import Foundation
import Ledger
import SluiceCore
import Testing

/// The state file on a full disk: messages that must be parked cannot be written, so sluice does not
/// confirm the slot past them, says what is wrong, keeps answering the console with the reason in
/// `/readyz`, and goes on by itself once there is room again — every change arrives.
@Suite(.serialized)
struct DiskFullTests {
    /// A 4 MB tmpfs of the test's own (tests run as root, as in CI), unmounted at the end.
    final class SmallFilesystem {
        let path: String

        init(megabytes: Int) throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent(TestEnvironment.uniqueName("small")).path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            let mounted = try runCommand("/usr/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
            guard mounted.status == 0 else {
                throw TestSetupError("cannot mount a \(megabytes) MB tmpfs at \(path) (the test needs root): \(mounted.stderr)")
            }
        }

        /// Writes a file until the filesystem is full; returns its path.
        @discardableResult
        func fill() throws -> String {
            let filler = path + "/filler"
            _ = try runCommand("/usr/bin/dd", ["if=/dev/zero", "of=\(filler)", "bs=64k"])
            _ = try runCommand("/usr/bin/dd", ["if=/dev/zero", "of=\(filler)-tail", "bs=512"])
            return filler
        }

        func freeBytes() -> Int {
            var stats = statvfs()
            return statvfs(path, &stats) == 0 ? Int(stats.f_bavail) * Int(stats.f_frsize) : -1
        }

        deinit {
            if (try? runCommand("/usr/bin/umount", [path]))?.status != 0 { _ = try? runCommand("/usr/bin/umount", ["-l", path]) }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    @Test func aFullDiskStopsConfirmingSaysWhyInTheLogAndReadyzAndEveryChangeArrivesOnceThereIsRoom() throws {
        let environment = try TestEnvironment.current()
        let disk = try SmallFilesystem(megabytes: 4)
        let broker = try OwnBroker()
        let db = try TestDatabase(environment)
        defer { db.drop() }
        try db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL)")
        let slot = TestEnvironment.uniqueName("slot")
        let topic = KafkaTopic(hosts: broker.hosts, name: TestEnvironment.uniqueName("full"))
        let statePath = disk.path + "/sluice-state.sqlite"
        let port = try freePort()
        let console = ConsoleClient(port: port, token: "t")
        let sluice = try SluiceProcess(environment, config: """
            database:
              url: \(db.url)
              slot: { name: \(slot), create_if_not_exists: true }
              publication: { name: \(TestEnvironment.uniqueName("pub")), create_if_not_exists: true, tables: [public.docs] }
              heartbeat_interval: 1s
            state: { path: \(statePath) }
            sinks:
              - name: s
                park_after: 2s
                destination: { type: kafka, hosts: "\(broker.hosts)", topic: \(topic.name) }
            console: { listen: "127.0.0.1:\(port)", token: "t" }
            """)
        // Stopped before the filesystem is unmounted and the broker goes.
        defer { withExtendedLifetime((disk, broker)) { sluice.stop() } }
        try #require(sluice.waitUntilStreaming(), "log:\n\(sluice.log)")
        try #require(console.waitUntilServing())
        try db.execute("INSERT INTO public.docs VALUES (0, 'before')")
        _ = try topic.waitForMessages(1, timeout: 30)

        // The broker freezes, so the next messages are parked after park_after; the disk is full, so the
        // parks (6 × 64 kB) cannot be written.
        broker.freeze()
        let filler = try disk.fill()
        #expect(disk.freeBytes() < 64 * 1024, "the filesystem is full: \(disk.freeBytes()) bytes free")
        for id in 1...6 { try db.execute("INSERT INTO public.docs VALUES ($1::int, repeat(md5($1::text), 2000))", [String(id)]) }

        // The fault happened: the write failed, and sluice says where, why, and what to do.
        let failure = "cannot write the state file \(statePath): No space left on device"
        #expect(eventually(timeout: 30) { sluice.log.contains(failure) }, "log:\n\(sluice.log)")
        #expect(eventually(timeout: 15) { sluice.log.contains("parking 6 messages needs about") }, "log:\n\(sluice.log)")
        let line = sluice.log.split(separator: "\n").first { $0.contains(failure) && $0.contains("parking") }.map(String.init) ?? ""
        #expect(line.contains("0 bytes free on its filesystem") && line.contains("free space there or move state.path to a larger disk"), "\(line)")
        var ready = try console.get("/readyz", auth: .none)
        #expect(try eventually(timeout: 15) {
            ready = try console.get("/readyz", auth: .none)
            return ready.status == 503 && ready.body.contains(failure)
        }, "\(ready)")
        #expect(try console.get("/api/status").status == 200, "the console keeps answering")
        // … and the slot stays where it was: nothing after the parked changes is confirmed.
        let confirmedDuringFault = try #require(try db.confirmedFlush(slot: slot))
        Thread.sleep(forTimeInterval: 3)
        #expect(try db.confirmedFlush(slot: slot) == confirmedDuringFault, "the slot does not move while the parks are unwritten")
        let parking = sluice.log.split(separator: "\n").filter { $0.contains(failure) && $0.contains("parking 6 messages needs about") }
        #expect(parking.count == 1, "said once, not at every retry: \(parking)")

        // Room again, and the broker back: sluice goes on by itself.
        try FileManager.default.removeItem(atPath: filler)
        try FileManager.default.removeItem(atPath: filler + "-tail")
        broker.thaw()
        #expect(eventually(timeout: 30) { sluice.log.contains("the state file is writable again") }, "log:\n\(sluice.log.suffix(3000))")
        let messages = try topic.waitForMessages(7, timeout: 90)
        #expect(Set(messages.compactMap(\.key)) == Set((0...6).map(String.init)), "every change arrives; log:\n\(sluice.log.suffix(3000))")
        let firstParked = try #require(messages.filter { $0.key != "0" }.compactMap { $0.metadata["commit_lsn"] as? Int }.min())
        #expect(confirmedDuringFault.rawValue < UInt64(firstParked), "the slot had stayed before the parked changes")
        #expect(try eventually(timeout: 30) { try console.get("/readyz", auth: .none).status == 200 })
        #expect(try eventually(timeout: 30) { try SQLiteStateStore(path: statePath).parkedCount(sink: "s") == 0 })
        #expect(try eventually(timeout: 30) { (try db.confirmedFlush(slot: slot) ?? .zero).rawValue > UInt64(firstParked) })
        #expect(sluice.stop() == 0)
    }
}
