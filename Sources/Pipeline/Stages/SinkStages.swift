import Foundation
import Functions
import PostgresSource
import SluiceCore

/// A sink's chain of stages: selection → enrichment → filter → routing → transform. The live path
/// and the retry path from the ledger run the same chain (each its own instance: a chain holds Lua
/// states and an enrichment connection, used by one thread at a time). What comes out goes to the
/// dispatcher, which only delivers.
final class SinkStages: @unchecked Sendable {
    let selection: SelectionStage
    let enrichment: EnrichmentQuery?
    /// Filter → routing → transform, in that order (routing sees the untransformed message, as in Sequin).
    let functions: SinkFunctions?

    init(sink: SinkConfig, databaseParameters: [(String, String)]) throws {
        selection = SelectionStage(sink: sink)
        enrichment = sink.enrichment.map {
            EnrichmentQuery(function: $0, connectionParameters: databaseParameters, valueFormat: sink.valueFormat)
        }
        functions = sink.hasFunctions ? try SinkFunctions(sink: sink) : nil
    }

    /// Runs messages as Sluice encoded them (or as the ledger kept them) through the chain: one
    /// enrichment query for the whole batch, then the functions on each.
    func run(_ batch: [OutgoingMessage]) -> [StageResult] {
        guard let enrichment else { return batch.map { run($0) } }
        let selected = batch.filter(selection.accepts)
        var rows = enrichment.run(selected.map { EnrichmentQuery.Input(table: $0.table, recordPKs: $0.message.recordPKs) })
            .makeIterator()
        return batch.map { outgoing in
            guard selection.accepts(outgoing), let row = rows.next() else { return .drop(outgoing) }
            switch row {
            case .success(let row):
                var enriched = outgoing.message
                enriched.value = MessageEncoder.enriched(enriched.value, with: row)
                return applyFunctions(outgoing, enriched: enriched)
            case .failure(let failure):
                return .failed(outgoing, stage: .enrichment, error: failure.message)
            }
        }
    }

    /// Runs one message through the chain.
    func run(_ outgoing: OutgoingMessage) -> StageResult {
        if enrichment != nil { return run([outgoing])[0] }
        guard selection.accepts(outgoing) else { return .drop(outgoing) }
        return applyFunctions(outgoing, enriched: nil)
    }

    /// Filter, routing and transform on `enriched` (the message with its enrichment) or the message itself.
    private func applyFunctions(_ encoded: OutgoingMessage, enriched: Message?) -> StageResult {
        var outgoing = encoded
        if let enriched {
            outgoing.replace(message: enriched, original: encoded.message)
            outgoing.memoryCost = encoded.message.value.count
        }
        guard let functions else { return .send(outgoing) }
        let input = outgoing.message
        switch functions.apply(to: input) {
        case .send(let message):
            // Replaced only when the functions changed something (a filter that keeps, or a route to the
            // default topic and key, leaves the message as it was: nothing to remember).
            if functions.transformsValue || message.topic != input.topic || message.key != input.key {
                outgoing.replace(message: message, original: encoded.message)
            }
            if functions.transformsValue { outgoing.memoryCost = encoded.message.value.count }
            return .send(outgoing)
        case .drop:
            return .drop(encoded)
        case .failed(let error):
            return .failed(encoded, stage: .function, error: error)
        }
    }
}

/// Which tables and actions a sink takes (`tables`, `source`, `actions`).
struct SelectionStage: Sendable {
    let sink: SinkConfig

    func accepts(table: TableName, action: Action) -> Bool { sink.accepts(table: table, action: action) }

    /// A message the sink took once (a parked one): still taken under the sink's present settings?
    func accepts(_ outgoing: OutgoingMessage) -> Bool {
        guard outgoing.isParked, let table = TableName(parsing: outgoing.table) else { return true }
        return accepts(table: table, action: outgoing.action)
    }
}
