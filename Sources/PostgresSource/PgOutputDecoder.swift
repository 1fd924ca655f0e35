import SluiceCore

/// Decodes pgoutput messages (protocol version 1) from the payload of an XLogData message.
/// Tuples share the payload's byte buffer: a row costs one array, not one string per value.
public enum PgOutputDecoder {
    /// Message kinds that carry the (sub)transaction's xid right after the kind byte when they are
    /// part of a streamed transaction (protocol 2).
    static let streamedKinds: Set<UInt8> = Set("RYIUDTM".utf8)

    /// The xid a message inside a streamed block belongs to (a subtransaction's own xid), if it has one.
    public static func streamedXid(_ bytes: [UInt8]) -> UInt32? {
        guard bytes.count >= 5, streamedKinds.contains(bytes[0]) else { return nil }
        return UInt32(bytes[1]) << 24 | UInt32(bytes[2]) << 16 | UInt32(bytes[3]) << 8 | UInt32(bytes[4])
    }

    /// Decodes one message; `streamed` says it sits between Stream Start and Stream Stop.
    public static func decode(_ bytes: [UInt8], streamed: Bool = false) throws(PgOutputError) -> PgOutputMessage {
        var reader = ByteReader(bytes: bytes)
        let kind = try reader.uint8()
        if streamed, streamedKinds.contains(kind) { _ = try reader.uint32() }
        switch kind {
        case UInt8(ascii: "S"):
            let xid = try reader.uint32()
            return .streamStart(xid: xid, firstSegment: try reader.uint8() == 1)
        case UInt8(ascii: "E"):
            return .streamStop
        case UInt8(ascii: "c"):
            let xid = try reader.uint32()
            _ = try reader.uint8() // flags, unused
            let commitLSN = try reader.uint64()
            let endLSN = try reader.uint64()
            return .streamCommit(xid: xid, commitLSN: LSN(commitLSN), endLSN: LSN(endLSN), timestamp: try reader.int64())
        case UInt8(ascii: "A"):
            let xid = try reader.uint32()
            return .streamAbort(xid: xid, subtransactionXid: try reader.uint32())
        case UInt8(ascii: "B"):
            let finalLSN = try reader.uint64()
            let timestamp = try reader.int64()
            let xid = try reader.uint32()
            return .begin(TransactionInfo(xid: xid, commitLSN: LSN(finalLSN), commitTimestamp: timestamp))
        case UInt8(ascii: "C"):
            _ = try reader.uint8() // flags, unused
            let commitLSN = try reader.uint64()
            let endLSN = try reader.uint64()
            let timestamp = try reader.int64()
            return .commit(commitLSN: LSN(commitLSN), endLSN: LSN(endLSN), timestamp: timestamp)
        case UInt8(ascii: "O"):
            let lsn = try reader.uint64()
            return .origin(commitLSN: LSN(lsn), name: try reader.cString())
        case UInt8(ascii: "R"):
            let id = try reader.uint32()
            let schema = try reader.cString()
            let name = try reader.cString()
            let identityByte = try reader.uint8()
            guard let identity = Relation.ReplicaIdentity(rawValue: identityByte) else {
                throw PgOutputError(message: "relation \(schema).\(name) has unknown replica identity \(identityByte)")
            }
            let count = Int(try reader.uint16())
            var columns: [RelationDescription.ColumnDescription] = []
            columns.reserveCapacity(count)
            for _ in 0..<count {
                let flags = try reader.uint8()
                let columnName = try reader.cString()
                let typeOID = try reader.uint32()
                let modifier = Int32(bitPattern: try reader.uint32())
                columns.append(.init(name: columnName, typeOID: typeOID, typeModifier: modifier, isKey: flags & 1 == 1))
            }
            // pg_catalog is sent as an empty namespace.
            return .relation(RelationDescription(id: id, schema: schema.isEmpty ? "pg_catalog" : schema, name: name,
                                                 replicaIdentity: identity, columns: columns))
        case UInt8(ascii: "Y"):
            let oid = try reader.uint32()
            let schema = try reader.cString()
            return .type(oid: oid, schema: schema, name: try reader.cString())
        case UInt8(ascii: "I"):
            let relationID = try reader.uint32()
            try reader.expect(UInt8(ascii: "N"), in: "Insert")
            return .insert(relationID: relationID, new: try reader.tuple())
        case UInt8(ascii: "U"):
            let relationID = try reader.uint32()
            var marker = try reader.uint8()
            var old: Tuple?
            var keyOnly = false
            if marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") {
                keyOnly = marker == UInt8(ascii: "K")
                old = try reader.tuple()
                marker = try reader.uint8()
            }
            guard marker == UInt8(ascii: "N") else {
                throw PgOutputError(message: "Update: expected N, found byte \(marker)")
            }
            return .update(relationID: relationID, old: old, oldIsKeyOnly: keyOnly, new: try reader.tuple())
        case UInt8(ascii: "D"):
            let relationID = try reader.uint32()
            let marker = try reader.uint8()
            guard marker == UInt8(ascii: "K") || marker == UInt8(ascii: "O") else {
                throw PgOutputError(message: "Delete: expected K or O, found byte \(marker)")
            }
            return .delete(relationID: relationID, old: try reader.tuple(), oldIsKeyOnly: marker == UInt8(ascii: "K"))
        case UInt8(ascii: "T"):
            let count = Int(try reader.uint32())
            let options = try reader.uint8()
            var ids: [UInt32] = []
            for _ in 0..<count { ids.append(try reader.uint32()) }
            return .truncate(relationIDs: ids, cascade: options & 1 != 0, restartIdentity: options & 2 != 0)
        case UInt8(ascii: "M"):
            let flags = try reader.uint8()
            let lsn = try reader.uint64()
            let prefix = try reader.cString()
            let length = Int(try reader.uint32())
            return .message(transactional: flags & 1 != 0, lsn: LSN(lsn), prefix: prefix, content: try reader.bytes(length))
        default:
            throw PgOutputError(message: "unknown message kind \(kind) (\(Character(Unicode.Scalar(kind))))")
        }
    }
}

/// Big-endian reads over a message buffer, with bounds checks that throw instead of trapping.
struct ByteReader {
    let bytes: [UInt8]
    var position = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func uint8() throws(PgOutputError) -> UInt8 {
        guard position < bytes.count else { throw truncated() }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func uint16() throws(PgOutputError) -> UInt16 {
        UInt16(truncatingIfNeeded: try integer(2))
    }

    mutating func uint32() throws(PgOutputError) -> UInt32 {
        UInt32(truncatingIfNeeded: try integer(4))
    }

    mutating func uint64() throws(PgOutputError) -> UInt64 { try integer(8) }

    mutating func int64() throws(PgOutputError) -> Int64 { Int64(bitPattern: try integer(8)) }

    private mutating func integer(_ size: Int) throws(PgOutputError) -> UInt64 {
        guard position + size <= bytes.count else { throw truncated() }
        var value: UInt64 = 0
        for index in position..<(position + size) { value = value << 8 | UInt64(bytes[index]) }
        position += size
        return value
    }

    mutating func cString() throws(PgOutputError) -> String {
        guard let end = bytes[position...].firstIndex(of: 0) else { throw truncated() }
        defer { position = end + 1 }
        return String(decoding: bytes[position..<end], as: UTF8.self)
    }

    mutating func bytes(_ count: Int) throws(PgOutputError) -> [UInt8] {
        guard count >= 0, position + count <= bytes.count else { throw truncated() }
        defer { position += count }
        return Array(bytes[position..<(position + count)])
    }

    mutating func expect(_ byte: UInt8, in message: String) throws(PgOutputError) {
        let found = try uint8()
        guard found == byte else {
            throw PgOutputError(message: "\(message): expected \(Character(Unicode.Scalar(byte))), found byte \(found)")
        }
    }

    /// TupleData: Int16 column count, then per column `n` (null), `u` (unchanged TOAST),
    /// `t` + Int32 length + text, or `b` + Int32 length + binary.
    mutating func tuple() throws(PgOutputError) -> Tuple {
        let count = Int(try uint16())
        var cells: [Cell] = []
        cells.reserveCapacity(count)
        for _ in 0..<count {
            let kind = try uint8()
            switch kind {
            case UInt8(ascii: "n"): cells.append(.null)
            case UInt8(ascii: "u"): cells.append(.unchangedToast)
            case UInt8(ascii: "t"), UInt8(ascii: "b"):
                let length = Int(try uint32())
                guard position + length <= bytes.count else { throw truncated() }
                let range = position..<(position + length)
                position += length
                cells.append(kind == UInt8(ascii: "t") ? .text(range) : .binary(range))
            default:
                throw PgOutputError(message: "unknown tuple column kind \(kind)")
            }
        }
        return Tuple(bytes: bytes, cells: cells)
    }

    func truncated() -> PgOutputError {
        PgOutputError(message: "message ends early at byte \(position) of \(bytes.count)")
    }
}
