import Foundation
import Hummingbird
import Logging
import Synchronization

/// Who may use the console: with `console.token` set, the API and `/metrics` need
/// `Authorization: Bearer <token>` (or the page's session cookie), and the pages a session made by
/// the login form. The token is compared in constant time and never logged or echoed.
final class ConsoleAuth: Sendable {
    static let cookieName = "sluice_session"
    private let token: [UInt8]
    private let sessions = Mutex<Set<String>>([])
    let logger: Logger

    init(token: String, logger: Logger) {
        self.token = Array(token.utf8)
        self.logger = logger
    }

    var isOpen: Bool { token.isEmpty }

    func tokenMatches(_ candidate: String) -> Bool {
        let given = Array(candidate.utf8)
        var difference = UInt8(truncatingIfNeeded: given.count ^ token.count)
        for index in 0..<max(given.count, token.count) {
            let a = index < given.count ? given[index] : 0
            let b = index < token.count ? token[index] : 0
            difference |= a ^ b
        }
        return difference == 0 && !token.isEmpty
    }

    /// A new session for a browser that gave the right token.
    func newSession() -> String {
        var bytes = [UInt8](repeating: 0, count: 32)
        for index in bytes.indices { bytes[index] = UInt8.random(in: 0...255) }
        let id = bytes.map { String(format: "%02x", $0) }.joined()
        sessions.withLock { _ = $0.insert(id) }
        return id
    }

    func endSession(_ id: String) { sessions.withLock { _ = $0.remove(id) } }

    func hasSession(_ request: Request) -> Bool {
        guard let id = request.cookies[Self.cookieName]?.value else { return false }
        return sessions.withLock { $0.contains(id) }
    }

    /// For the API and /metrics: the bearer token, or a page session.
    func allowsAPI(_ request: Request) -> Bool {
        if isOpen || hasSession(request) { return true }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return false }
        return tokenMatches(String(header.dropFirst("Bearer ".count)))
    }

    func sessionCookie(_ id: String) -> Cookie {
        Cookie(name: Self.cookieName, value: id, path: "/", httpOnly: true, sameSite: .strict)
    }

    func refused(_ request: Request, reason: String) {
        logger.warning("console: request refused", metadata: [
            "path": "\(request.uri.path)", "method": "\(request.method)", "reason": "\(reason)"])
    }
}

/// `/api/*` and `/metrics`: 401 with a JSON error without the token.
struct APIAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let auth: ConsoleAuth

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard auth.allowsAPI(request) else {
            let given = request.headers[.authorization] != nil
            auth.refused(request, reason: given ? "wrong token" : "no token")
            return try APIError(.unauthorized, given ? "wrong token — send Authorization: Bearer <console.token>"
                                                     : "send Authorization: Bearer <console.token>").response(from: request, context: context)
        }
        return try await next(request, context)
    }
}

/// Pages: without a session, to the login form.
struct PageAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let auth: ConsoleAuth

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard auth.isOpen || auth.hasSession(request) else {
            return Response(status: .seeOther, headers: [.location: "/login"])
        }
        return try await next(request, context)
    }
}
