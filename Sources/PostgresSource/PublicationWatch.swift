import Foundation
import Logging
import SluiceCore

/// Looks, every few seconds, at what the stream depends on but PostgreSQL does not report in it: a
/// dropped publication fails the stream only at the next change, and a table dropped or removed from
/// the publication just goes quiet. A missing publication stops sluice; a table problem is logged
/// once (and again when it changes), shown by `/readyz`, and — for a table removed from a publication
/// sluice may manage — answered by adding it back.
struct PublicationWatch {
    let database: DatabaseConfig
    /// The tables the configuration names, each with where (`database.publication.tables`, `sinks[0].tables`).
    let tables: [(table: TableName, origin: String)]
    let interval: Double
    private var last = Date.distantPast
    /// The problem last reported per table.
    private var reported: [TableName: String] = [:]

    init(database: DatabaseConfig, tables: [(table: TableName, origin: String)], interval: Double) {
        self.database = database
        self.tables = tables
        self.interval = interval
    }

    /// Checks when due: throws when the publication is gone; else the current table problems (nil: not checked now).
    mutating func checkIfDue(now: Date, on connection: PostgresConnection, confirmed: LSN,
                             logger: Logger) throws(ReplicationFailure) -> [String]? {
        guard now.timeIntervalSince(last) >= interval else { return nil }
        last = now
        do {
            return try check(on: connection, confirmed: confirmed, logger: logger)
        } catch let error as ReplicationFailure {
            throw error
        } catch {
            // The catalog connection failed: the stream's own errors say more; look again next time.
            return nil
        }
    }

    private mutating func check(on connection: PostgresConnection, confirmed: LSN, logger: Logger) throws -> [String] {
        let publication = try connection.query("SELECT puballtables FROM pg_publication WHERE pubname = $1", [database.publicationName])
        guard let row = publication.rows.first else {
            throw ReplicationFailure.publicationMissing(publication: database.publicationName, slot: database.slotName,
                                                        confirmed: confirmed)
        }
        let allTables = row[0] == "t"
        var problems: [TableName: String] = [:]
        for (table, origin) in tables where problems[table] == nil {
            let state = try connection.query("""
                SELECT c.oid IS NOT NULL AS present, coalesce(c.relispartition, false) AS partition,
                       EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $2 AND p.schemaname = $3 AND p.tablename = $4) AS published
                FROM (SELECT to_regclass($1) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid
                """, [qualified(table), database.publicationName, table.schema, table.name])
            if state.value("present") != "t" {
                problems[table] = """
                    table \(table) (\(origin)) does not exist (dropped or renamed?) — sluice sends nothing for it; take it out \
                    of \(origin), or put its new name there, before sluice starts again
                    """
            } else if !allTables, state.value("published") != "t", state.value("partition") != "t" {
                problems[table] = try unpublished(table, origin: origin, on: connection)
            }
        }
        for (table, problem) in problems where reported[table] != problem { logger.error("\(problem)") }
        for table in reported.keys where problems[table] == nil {
            logger.notice("table is published again", metadata: ["table": "\(table)", "publication": "\(database.publicationName)"])
        }
        reported = problems
        return problems.keys.sorted { $0.description < $1.description }.map { problems[$0]! }
    }

    /// A table the publication does not hold: added back when it is one of `database.publication.tables`
    /// and sluice may manage the publication (as at start), else the command to run. Either way its
    /// changes made meanwhile were never published.
    private func unpublished(_ table: TableName, origin: String, on connection: PostgresConnection) throws -> String {
        let lost = "its changes made while it was not published never reach sluice: backfill \(table) (sluice backfill start --sink NAME --table \(table))"
        let publication = PostgresConnection.quoteIdentifier(database.publicationName)
        if database.createPublication, database.publicationTables.contains(table) {
            try connection.query("ALTER PUBLICATION \(publication) ADD TABLE \(qualified(table))")
            return "table \(table) (\(origin)) was removed from publication \"\(database.publicationName)\" — sluice added it back (create_if_not_exists: true); \(lost)"
        }
        return """
            table \(table) (\(origin)) is not in publication "\(database.publicationName)" — run ALTER PUBLICATION \(publication) \
            ADD TABLE \(qualified(table)); \(lost)
            """
    }

    private func qualified(_ table: TableName) -> String {
        PostgresConnection.quoteIdentifier(table.schema) + "." + PostgresConnection.quoteIdentifier(table.name)
    }
}
