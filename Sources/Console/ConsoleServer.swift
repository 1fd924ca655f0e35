import Hummingbird
import Logging
import Prometheus

/// Sluice's HTTP endpoint on `console.listen`: `/metrics` (Prometheus text format) and `/healthz`.
/// With `console.token` set, everything but `/healthz` needs `Authorization: Bearer <token>`.
public enum ConsoleServer {
    public static func application(host: String, port: Int, token: String, registry: PrometheusCollectorRegistry,
                                   logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("healthz") { _, _ in "ok\n" }
        let protected = router.group()
        if !token.isEmpty { protected.add(middleware: BearerTokenMiddleware(token: token)) }
        protected.get("metrics") { _, _ -> Response in
            var text: [UInt8] = []
            registry.emit(into: &text)
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
                           logger: logger)
    }
}

/// Refuses requests without the configured bearer token; the token itself is never logged.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.headers[.authorization] == "Bearer \(token)" else {
            throw HTTPError(.unauthorized, message: "send Authorization: Bearer <console.token>")
        }
        return try await next(request, context)
    }
}
