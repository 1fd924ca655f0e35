import Foundation
import Hummingbird
import Logging
import Pipeline
import Prometheus

/// Sluice's console on `console.listen`: web pages, the JSON API (`/api`), `/metrics`
/// (Prometheus), `/healthz` (liveness) and `/readyz` (PostgreSQL, the state file and every sink's brokers work).
/// With `console.token` set, everything but `/healthz` and `/readyz` needs the token.
public enum ConsoleServer {
    public static func application(host: String, port: Int, token: String, inspectors: InspectorSlot,
                                   registry: PrometheusCollectorRegistry, logger: Logger) -> some ApplicationProtocol {
        Application(router: router(token: token, inspectors: inspectors, registry: registry, logger: logger),
                    configuration: .init(address: .hostname(host, port: port), serverName: "sluice"), logger: logger)
    }

    /// Every route of the console, behind its token check.
    static func router(token: String, inspectors: InspectorSlot, registry: PrometheusCollectorRegistry,
                       logger: Logger) -> Router<ConsoleRequestContext> {
        let auth = ConsoleAuth(token: token, logger: logger)
        let router = Router(context: ConsoleRequestContext.self)
        router.get("healthz") { _, _ in "ok\n" }
        let readiness = Readiness(inspectors: inspectors)
        router.get("readyz") { _, _ -> Response in
            let (ready, reason) = await readiness.check()
            return Response(status: ready ? .ok : .serviceUnavailable, headers: [.contentType: "text/plain; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(string: (ready ? "ready" : reason) + "\n")))
        }

        let metrics = router.group().add(middleware: APIAuthMiddleware(auth: auth))
        metrics.get("metrics") { _, _ -> Response in
            var text: [UInt8] = []
            registry.emit(into: &text)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        let api = router.group("api").add(middleware: APIAuthMiddleware(auth: auth))
        BackfillRoutes(inspectors: inspectors).register(on: api)
        APIRoutes(inspectors: inspectors).register(on: api)

        let pages = PageRoutes(inspectors: inspectors, auth: auth)
        pages.registerLogin(on: router)
        pages.register(on: router.group().add(middleware: PageAuthMiddleware(auth: auth)))
        return router
    }

    /// True for addresses only this machine can reach; elsewhere the console needs a token.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// `/readyz`: connected to PostgreSQL, the state file writable, the configured tables published, and
/// every sink's brokers answer (checked at most every 5 s). Not ready, the body says why.
actor Readiness {
    let inspectors: InspectorSlot
    private var last: (at: Date, ready: Bool, reason: String)?

    init(inspectors: InspectorSlot) { self.inspectors = inspectors }

    func check() async -> (Bool, String) {
        if let last, Date().timeIntervalSince(last.at) < 5 { return (last.ready, last.reason) }
        guard let inspector = inspectors.inspector else { return (false, "starting: the pipeline is not running yet") }
        var result = (ready: true, reason: "")
        let problems = inspector.problems()
        if !problems.isEmpty {
            result = (false, problems.joined(separator: "\n"))
        } else if !inspector.status().connected {
            result = (false, "not connected to PostgreSQL")
        } else {
            let brokers = await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume(returning: inspector.brokersAnswer(timeout: 2)) }
            }
            if !brokers { result = (false, "a sink's Kafka brokers do not answer") }
        }
        last = (Date(), result.ready, result.reason)
        return result
    }
}
