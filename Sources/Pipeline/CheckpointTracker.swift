import SluiceCore

/// Decides how far the slot may advance (ARCHITECTURE invariant 1): to the end of the newest
/// transaction such that it and every earlier one has all of its messages acknowledged.
///
/// Not thread-safe on its own; `Pipeline` guards it with a lock.
public struct CheckpointTracker: Sendable {
    struct Entry: Sendable {
        var endLSN: LSN?
        var committed = false
        var remaining = 0
    }

    private var entries: [Entry] = []
    private var head = 0
    /// Sequence number of `entries[head]`; tokens are sequence numbers, starting at 1.
    private var headSequence: UInt = 1
    private var open = false
    private var idleLSN = LSN.zero
    public private(set) var confirmed: LSN
    /// Messages handed out and not yet acknowledged.
    public private(set) var outstanding = 0

    public init(confirmed: LSN = .zero) {
        self.confirmed = confirmed
    }

    /// Starts tracking a transaction.
    public mutating func begin() {
        if open { abandonOpen() }
        entries.append(Entry())
        open = true
    }

    /// Registers one message of the open transaction; returns the token its acknowledgement carries.
    public mutating func addMessage() -> UInt {
        precondition(open, "addMessage() outside a transaction")
        entries[entries.count - 1].remaining += 1
        outstanding += 1
        return headSequence + UInt(entries.count - 1 - head)
    }

    /// The open transaction is complete; it ends at `endLSN`.
    public mutating func commit(endLSN: LSN) {
        guard open else { return }
        entries[entries.count - 1].endLSN = endLSN
        entries[entries.count - 1].committed = true
        open = false
        advance()
    }

    /// One message of the transaction `token` names is acknowledged (or durably settled).
    public mutating func acknowledge(_ token: UInt) {
        guard token >= headSequence, token - headSequence < UInt(entries.count - head) else { return }
        let index = head + Int(token - headSequence)
        guard entries[index].remaining > 0 else { return }
        entries[index].remaining -= 1
        outstanding -= 1
        if index == head { advance() }
    }

    /// Nothing is open in the stream and all transactions before `lsn` have been seen.
    public mutating func caughtUp(to lsn: LSN) {
        guard !open else { return }
        idleLSN = max(idleLSN, lsn)
        advance()
    }

    /// The stream broke: the open transaction will be sent again, so it must never advance the slot.
    public mutating func abandonOpen() {
        guard open else { return }
        entries[entries.count - 1].committed = true
        entries[entries.count - 1].endLSN = nil
        open = false
        advance()
    }

    private mutating func advance() {
        while head < entries.count, entries[head].committed, entries[head].remaining == 0 {
            if let end = entries[head].endLSN { confirmed = max(confirmed, end) }
            head += 1
            headSequence += 1
        }
        if head == entries.count, !open {
            // Everything received is acknowledged: follow the server's position while idle.
            confirmed = max(confirmed, idleLSN)
        }
        if head > 1024, head * 2 > entries.count {
            entries.removeFirst(head)
            head = 0
        }
    }
}
