import Foundation
import KafkaMock
import KafkaSink
import SluiceCore
import Testing

/// One row updated over and over: its messages are pipelined (many in flight on one partition) and
/// still arrive in order when the broker fails a request or goes away in the middle.
@Suite(.serialized)
struct HotRowTests {
    /// The first time each `seq` appears, in topic order (duplicates after a resend are allowed).
    func firstOccurrences(_ messages: [ConsumedMessage]) -> [Int] {
        var seen = Set<Int>()
        return messages.compactMap { $0.record["seq"] as? Int }.filter { seen.insert($0).inserted }
    }

    /// Reads the topic until `count` distinct seqs arrived.
    func waitForSeqs(_ topic: KafkaTopic, count: Int, timeout: Double = 90) -> [ConsumedMessage] {
        var last: [ConsumedMessage] = []
        _ = eventually(timeout: timeout, every: 0.5) {
            last = (try? topic.messages()) ?? last
            return Set(last.compactMap { $0.record["seq"] as? Int }).count >= count
        }
        return last
    }

    func inFlightPeak(_ log: String) -> Int? {
        guard let range = log.range(of: "in_flight_peak=") else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }

    @Test func aHotRowIsPipelinedInOrderThroughARetriableErrorAndABrokerOutage() throws {
        let fixture = try Fixture()
        let db = fixture.database
        let cluster = try MockKafkaCluster(brokers: 1)
        let topic = KafkaTopic(hosts: cluster.bootstrapServers, name: TestEnvironment.uniqueName("hot"))
        try cluster.createTopic(topic.name, partitions: 1)
        // A far-away broker: one message per round trip would take 20 s for 40 updates.
        cluster.setRoundTripTime(1, milliseconds: 500)
        try db.execute("CREATE TABLE public.counter (id int PRIMARY KEY, seq int NOT NULL)")
        try db.execute("INSERT INTO public.counter VALUES (1, 0)")
        // batch_size 1: one message per produce request, so "the 5th request" is the 5th message.
        let config = fixture.config(tables: ["public.counter"],
                                    sinks: [.init(name: "s", topic: topic, extra: "      batch_size: 1\n    park_after: 60s\n")],
                                    hosts: cluster.bootstrapServers)
        let sluice = try fixture.startSluice(config: config)

        // 1. A retriable error on the 5th of 20 in-flight messages of one key.
        cluster.failNextProduceRequests(with: [0, 0, 0, 0, MockKafkaCluster.notEnoughReplicas])
        for seq in 1...20 { try db.execute("UPDATE public.counter SET seq = $1 WHERE id = 1", [String(seq)]) }
        // 2. The next 20: the broker goes away while they are in flight (about the 4th is through), and comes back.
        Thread.sleep(forTimeInterval: 12)
        for seq in 21...40 { try db.execute("UPDATE public.counter SET seq = $1 WHERE id = 1", [String(seq)]) }
        Thread.sleep(forTimeInterval: 2)
        cluster.setBrokerDown(1)
        Thread.sleep(forTimeInterval: 3)
        cluster.setBrokerUp(1)
        // The far-away broker slows consumers too: read at full speed.
        cluster.setRoundTripTime(1, milliseconds: 0)
        let all = waitForSeqs(topic, count: 40)
        #expect(firstOccurrences(all) == Array(1...40), "every message arrives, first occurrences in order; log:\n\(sluice.log)")
        #expect(Set(all.map(\.key)) == ["1"])

        #expect(sluice.stop() == 0)
        let peak = inFlightPeak(sluice.log) ?? 0
        #expect(peak >= 5, "several messages of the one key were in flight at once (peak \(peak)); log:\n\(sluice.log)")
    }
}
