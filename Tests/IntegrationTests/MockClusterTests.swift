import Foundation
import KafkaMock
import KafkaSink
import Synchronization
import Testing

/// The test harness itself: taking a mock broker down while the test process launches children.
struct MockClusterTests {
    /// librdkafka re-binds a downed broker's port and aborts the process if it cannot. A child being
    /// launched holds a copy of the old listening socket until it closes it; without
    /// `MockKafkaCluster.launchLock` and the closes before exec (see `launch`) these cycles abort the
    /// test process within seconds (seen in CI: kcat polls beside a broker outage test).
    @Test func brokerGoesDownAndUpWhileChildrenLaunch() throws {
        let cluster = try MockKafkaCluster(brokers: 1)
        let launching = Launching()
        for _ in 0..<2 {
            Thread { while launching.on.load(ordering: .relaxed) { _ = try? runCommand("/bin/true", []) } }.start()
        }
        defer { launching.on.store(false, ordering: .relaxed) }
        for _ in 0..<300 {
            cluster.setBrokerDown(1)
            Thread.sleep(forTimeInterval: 0.005)
            cluster.setBrokerUp(1)
            Thread.sleep(forTimeInterval: 0.005)
        }
        // The broker serves again after the last cycle: a client lists its metadata.
        let listed = eventually(timeout: 20, every: 0.5) {
            (try? runCommand("/usr/bin/kcat", ["-L", "-b", cluster.bootstrapServers, "-m", "5"]))?.status == 0
        }
        #expect(listed)
    }
}

private final class Launching: Sendable {
    let on = Atomic(true)
}
