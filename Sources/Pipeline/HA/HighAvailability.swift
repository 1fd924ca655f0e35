import Foundation
import Ledger
import Logging
import ServiceLifecycle

/// `state.store: postgres`: the instances of one slot share their state in PostgreSQL and elect one
/// leader, which streams; the others stand by and take over when the leader's session ends or its lease
/// runs out. A leader that loses its lease stops sending at once and stands by again; it never takes
/// the slot back from a live leader (the election only hands out a free or expired slot).
struct HighAvailability {
    let service: SluiceService
    let parameters: [(String, String)]
    let schema: String

    func run() async throws {
        let lease = service.config.ha.lease
        // Every connection to PostgreSQL (replication, catalog, state) notices a partition within the lease.
        var config = service.config
        config.database.connectionParameters = LeaderElection.partitionAware(config.database.connectionParameters, lease: lease)
        let service = SluiceService(config: config, logger: self.service.logger, inspectorSlot: self.service.inspectorSlot)
        let logger = service.logger, status = service.inspectorSlot.ha
        let slot = config.database.slotName
        let instance = config.ha.instance ?? HAStatus.defaultInstance
        let store = try PostgresStateStore(parameters: LeaderElection.partitionAware(parameters, lease: lease), schema: schema, slot: slot,
                                           applicationName: LeaderElection.storeApplicationName(instance: instance), access: .standby)
        let election = LeaderElection(parameters: parameters, schema: schema, slot: slot, instance: instance, lease: lease,
                                      logger: logger)
        status.standby(instance: instance, leader: nil)
        logger.info("electing a leader for the slot", metadata: ["slot": "\(slot)", "instance": "\(instance)", "lease_s": "\(lease)",
                                                                  "state": "\(store.location)"])
        var seen: LeaseHolder?
        var lastError = ""
        while !Task.isShuttingDownGracefully {
            let attempt: LeaderElection.Attempt
            let attemptedAt = LeaseKeeper.now()
            do {
                attempt = try election.attempt()
                lastError = ""
            } catch {
                if error.message != lastError {
                    logger.warning("cannot reach PostgreSQL for the election; standing by and trying again",
                                   metadata: ["error": "\(error.message)"])
                }
                lastError = error.message
                status.standby(instance: instance, leader: seen)
                await Self.pause(seconds: min(1, lease / 3))
                continue
            }
            switch attempt {
            case .standby(let holder):
                if holder?.instance != seen?.instance || holder?.term != seen?.term, let holder {
                    logger.info("standing by", metadata: ["leader": "\(holder.instance)", "term": "\(holder.term)",
                                                          "lease_expires_at": "\(holder.expiresAt)"])
                }
                seen = holder
                status.standby(instance: instance, leader: holder)
                await Self.pause(seconds: 0.5)
            case .leader(let term, let expiresAt, let previous):
                logger.notice("leading the slot", metadata: ["slot": "\(slot)", "term": "\(term)", "previous": "\(previous ?? "none")"])
                status.leading(instance: instance, term: term, expiresAt: expiresAt, previous: previous)
                store.access = .leader(term: term)
                let keeper = LeaseKeeper(election: election, claimedAt: attemptedAt, status: status, logger: logger)
                let end: SluiceService.TermEnd
                do {
                    end = try await service.lead(store: store, lease: keeper)
                } catch {
                    keeper.stop()
                    store.access = .standby
                    election.resign()
                    throw error
                }
                keeper.stop()
                store.access = .standby
                switch end {
                case .stopped:
                    election.resign()
                    return
                case .leaseLost:
                    election.forget()
                    seen = nil
                    status.standby(instance: instance, leader: nil)
                    logger.warning("stepped down: standing by until the slot is free or its lease expires")
                }
            }
        }
    }

    /// Sleeps up to `seconds`, less when shutdown begins.
    static func pause(seconds: Double) async {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline, !Task.isShuttingDownGracefully { try? await Task.sleep(for: .milliseconds(50)) }
    }
}
