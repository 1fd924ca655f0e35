import ArgumentParser
import Foundation
import Ledger
import Pipeline
import PostgresSource
import SluiceCore

struct StateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state", abstract: "Move sluice's state (parked messages, delivered and cancelled ones, backfills) between stores.",
        subcommands: [StateCopy.self])
}

enum StoreKind: String, ExpressibleByArgument, CaseIterable {
    case sqlite, postgres
}

/// `sluice state copy --from sqlite --to postgres`: a stopped single instance moves its state file into
/// PostgreSQL, so that it can switch to `state.store: postgres` (and high availability) without losing
/// a parked message. The other way round works too.
struct StateCopy: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "copy",
        abstract: "Copy a stopped instance's state from one store into the other (an empty one).",
        discussion: """
            sqlite is the file at state.path; postgres is the schema state.schema (default sluice) on state.url, else on \
            the database connection. Stop sluice first: the copy refuses while an instance runs on either store.
            """)

    @Option(help: "The store to copy from: sqlite or postgres.")
    var from: StoreKind

    @Option(help: "The store to copy into: sqlite or postgres.")
    var to: StoreKind

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "sluice.yml"

    func validate() throws {
        if from == to { throw ValidationError("--from and --to are both \(from.rawValue) — copy from one store into the other") }
    }

    func run() throws {
        let loaded: SluiceConfig
        do { loaded = try ConfigFile.load(path: config) } catch {
            FileHandle.standardError.write(Data((error.description + "\n").utf8))
            throw ExitCode(2)
        }
        do {
            let source = try Self.store(from, config: loaded, reading: true)
            let target = try Self.store(to, config: loaded, reading: false)
            let snapshot = try source.snapshot()
            try target.restore(snapshot)
            print("copied \(snapshot.summary) from \(source.location) to \(target.location)")
            if to == .postgres, !loaded.stateStore.isPostgres {
                print("next: set state.store: postgres in \(config), then start sluice")
            }
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("sluice state copy: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// The store of `kind` as the configuration places it; refuses one a running sluice uses.
    static func store(_ kind: StoreKind, config: SluiceConfig, reading: Bool) throws -> any StateStore {
        switch kind {
        case .sqlite:
            try ensureStopped(sqlite: config.statePath)
            return reading ? try SQLiteStateStore(readingExisting: config.statePath) : try SQLiteStateStore(path: config.statePath)
        case .postgres:
            let (parameters, schema) = postgresPlace(config)
            let store = try PostgresStateStore(parameters: parameters, schema: schema, slot: config.database.slotName,
                                               applicationName: "sluice-state-copy", access: .unfenced)
            try ensureStopped(postgres: parameters, schema: schema, slot: config.database.slotName)
            return store
        }
    }

    /// `state.url`/`state.schema` with `state.store: postgres`; else the database connection and schema sluice.
    static func postgresPlace(_ config: SluiceConfig) -> (parameters: [(String, String)], schema: String) {
        if case .postgres(let parameters, let schema) = config.stateStore { return (parameters, schema) }
        return (config.database.connectionParameters, "sluice")
    }

    /// Takes the state file's lock for a moment, as a starting sluice would: refused while one runs on it.
    static func ensureStopped(sqlite path: String) throws {
        do { close(try SluiceService.lockState(path: path)) } catch is StateFileError {
            throw StateCopyError("\(path) is in use by a running sluice — stop it first")
        }
    }

    static func ensureStopped(postgres parameters: [(String, String)], schema: String, slot: String) throws {
        let connection = try PostgresConnection(parameters: parameters, applicationName: "sluice-state-copy")
        if let lease = try LeaderElection.lease(on: connection, schema: schema, slot: slot), !lease.expired {
            throw StateCopyError("instance \(lease.holder.instance) leads slot \(slot) (its lease runs until "
                                 + "\(InspectedMessage.timestamp(lease.holder.expiresAt))) — stop every sluice of the slot first")
        }
    }
}

struct StateCopyError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The configured store, read-only, for commands that look at a stopped (or remote) instance's state.
func openStateForReading(_ config: SluiceConfig) throws -> any StateStore {
    switch config.stateStore {
    case .sqlite:
        return try SQLiteStateStore(readingExisting: config.statePath)
    case .postgres(let parameters, let schema):
        return try PostgresStateStore(parameters: parameters, schema: schema, slot: config.database.slotName,
                                      applicationName: "sluice-read", access: .standby)
    }
}
