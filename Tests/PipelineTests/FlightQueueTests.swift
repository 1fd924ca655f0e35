import Ledger
@testable import Pipeline
import SluiceCore
import Testing

/// A group's in-flight queue keeps its first message inline; it must still behave as a queue in order.
@Suite struct FlightQueueTests {
    func message(_ index: Int) -> OutgoingMessage {
        OutgoingMessage(position: MessagePosition(commitLSN: LSN(100), commitIndex: index), group: "public.t\u{1F}1",
                        table: "public.t", message: Message(key: Array("1".utf8), value: Array("{}".utf8), topic: "t", recordPKs: ["1"]),
                        checkpointToken: UInt(index))
    }

    func indexes(_ queue: FlightQueue) -> [Int] { queue.map(\.position.commitIndex) }

    @Test func keepsOrderAcrossAppendsAndRemovals() {
        var queue = FlightQueue()
        #expect(queue.isEmpty && queue.last == nil)
        for index in 0..<5 { queue.append(message(index)) }
        #expect(indexes(queue) == [0, 1, 2, 3, 4])
        #expect(queue.count == 5 && queue.last?.position.commitIndex == 4)

        // A report for a message in the middle, then for the oldest: the rest stay in order.
        #expect(queue.remove(at: 2).position.commitIndex == 2)
        #expect(queue.remove(at: 0).position.commitIndex == 0)
        #expect(indexes(queue) == [1, 3, 4])
        #expect(queue.firstIndex { $0.position.commitIndex == 4 } == 2)

        queue.append(message(5))
        while !queue.isEmpty { queue.remove(at: 0) }
        #expect(queue.isEmpty && queue.count == 0)

        // Empty again, the next message is the oldest.
        queue.append(message(6))
        #expect(indexes(queue) == [6] && queue.first?.position.commitIndex == 6)
    }
}
