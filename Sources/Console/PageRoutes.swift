import ConsoleRequests
import Foundation
import Hummingbird
import Mustache
import Pipeline

/// The server-rendered pages: overview, a sink's messages by state, one message with Retry and Cancel.
struct PageRoutes: Sendable {
    let inspectors: InspectorSlot
    let auth: ConsoleAuth
    let library: MustacheLibrary

    init(inspectors: InspectorSlot, auth: ConsoleAuth) {
        self.inspectors = inspectors
        self.auth = auth
        var library = MustacheLibrary()
        // The templates are ours and fixed: a parse error is a programming error caught by every test run.
        try! library.register(LayoutTemplate.text, named: "layout")
        try! library.register(OverviewTemplate.text, named: "overview")
        try! library.register(SinkTemplate.text, named: "sink")
        try! library.register(MessageTemplate.text, named: "message")
        try! library.register(LoginTemplate.text, named: "login")
        self.library = library
    }

    func registerLogin(on router: Router<ConsoleRequestContext>) {
        router.get("login") { _, _ -> Response in self.page("login", title: "Log in", [:], loggedIn: false, refresh: false) }
        router.post("login") { request, _ -> Response in
            let form = try await Self.form(request)
            guard self.auth.tokenMatches(form["token"] ?? "") else {
                self.auth.refused(request, reason: "wrong token at login")
                let values: [String: Any] = ["wrong": true]
                return self.page("login", title: "Log in", values, loggedIn: false, refresh: false, status: .unauthorized)
            }
            var response = Response(status: .seeOther, headers: [.location: "/"])
            response.setCookie(self.auth.sessionCookie(self.auth.newSession()))
            return response
        }
        router.post("logout") { request, _ -> Response in
            if let id = request.cookies[ConsoleAuth.cookieName]?.value { self.auth.endSession(id) }
            return Response(status: .seeOther, headers: [.location: "/login"])
        }
    }

    func register(on router: RouterGroup<ConsoleRequestContext>) {
        router.get("/") { _, _ in try self.overview() }
        router.get("sinks/:sink") { request, context in
            try self.sinkPage(context.parameters.require("sink"), state: request.uri.queryParameters.get("state").map { String($0) })
        }
        router.get("sinks/:sink/messages/:id") { request, context in
            try self.messagePage(context.parameters.require("sink"), id: context.parameters.require("id"),
                                 notice: request.uri.queryParameters.get("notice").map { String($0) })
        }
        for action in ["retry", "cancel"] {
            router.post("sinks/:sink/messages/:id/\(action)") { _, context -> Response in
                let sink = try context.parameters.require("sink"), id = try context.parameters.require("id")
                var notice: String
                if let inspector = self.inspectors.inspector {
                    do {
                        _ = action == "retry" ? try inspector.retry(sink: sink, id: id) : try inspector.cancel(sink: sink, id: id)
                        notice = action == "retry" ? "Retrying now." : "Cancelled: the group moves on."
                    } catch let error as InspectionError {
                        notice = error.message
                    }
                } else {
                    notice = "sluice is starting; try again in a moment"
                }
                let query = notice.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
                return Response(status: .seeOther, headers: [.location: "/sinks/\(sink)/messages/\(id)?notice=\(query)"])
            }
        }
    }

    // MARK: - Pages

    private func overview() throws -> Response {
        guard let inspector = inspectors.inspector else { return starting() }
        let status = inspector.status()
        let cards: [[String: Any]] = status.sinks.map { sink in
            ["name": sink.name, "topic": sink.topic.isEmpty ? "(routed)" : sink.topic, "rate": String(format: "%.1f", sink.messagesPerSecond),
             "inFlight": sink.inFlight, "waiting": sink.waiting, "failing": sink.failing, "hasFailing": sink.failing > 0,
             "delivered": sink.deliveredTotal, "cancelled": sink.cancelledTotal, "filtered": sink.filteredTotal,
             "exactlyOnce": sink.transactions != nil, "delivery": sink.delivery.replacingOccurrences(of: "_", with: "-"),
             "committedPosition": sink.transactions?.committedPosition.map { "\($0.commitLSN) #\($0.commitIndex)" } ?? "none yet",
             "transactionState": sink.transactions?.state ?? "",
             "transactionError": sink.transactions?.lastError as Any]
        }
        return page("overview", title: "Overview", [
            "database": status.databaseName, "connected": status.connected, "slot": status.slotName,
            "confirmedLSN": status.confirmedFlushLSN.description, "lag": Self.bytes(status.lagBytes), "sinkCards": cards,
        ])
    }

    private func sinkPage(_ name: String, state text: String?) throws -> Response {
        guard let inspector = inspectors.inspector else { return starting() }
        guard let sink = inspector.status().sinks.first(where: { $0.name == name }) else {
            return page("overview", title: "Not found", ["sinkCards": []], status: .notFound)
        }
        let state = text.flatMap(MessageState.init(rawValue:)) ?? (sink.failing > 0 ? .failing : .inFlight)
        let counts: [MessageState: Int] = [.inFlight: sink.inFlight, .waiting: sink.waiting, .failing: sink.failing,
                                           .delivered: min(sink.deliveredTotal, 1_000), .cancelled: sink.cancelledTotal]
        var notice: String?
        var messages: [InspectedMessage] = []
        do { messages = try inspector.messages(sink: name, state: state, limit: 200) } catch { notice = error.message }
        if state == .delivered, messages.count > counts[.delivered] ?? 0 { notice = nil }
        let backfills: [[String: Any]] = (inspector.backfills?.list(sink: name) ?? []).prefix(20).map { backfill in
            let total = max(backfill.rowsInitialCount, backfill.rowsProcessedCount)
            return ["id": backfill.id, "table": backfill.table, "state": backfill.state.rawValue, "lastError": backfill.lastError as Any,
                    "total": total, "processed": backfill.rowsProcessedCount, "ingested": backfill.rowsIngestedCount,
                    "percent": total > 0 ? backfill.rowsProcessedCount * 100 / total : 100,
                    "started": InspectedMessage.timestamp(backfill.insertedAt)]
        }
        let tabs: [[String: Any]] = MessageState.allCases.map { tab in
            ["sink": name, "state": tab.rawValue, "label": Self.label(tab), "active": tab == state,
             "count": tab == .delivered && messages.count > 0 && state == .delivered ? messages.count : counts[tab] ?? 0]
        }
        return page("sink", title: name, [
            "name": name, "topic": sink.topic.isEmpty ? "(routed)" : sink.topic, "tabs": tabs, "state": state.rawValue,
            "stateLabel": Self.label(state), "notice": notice as Any, "hasMessages": !messages.isEmpty,
            "messages": messages.map { Self.row($0, sink: name) },
            "showsError": state == .failing || state == .cancelled, "showsNextAttempt": state == .failing,
            "showsOffset": state == .delivered, "showsReason": state == .cancelled,
            "hasBackfills": !backfills.isEmpty, "backfills": backfills,
        ])
    }

    private func messagePage(_ sink: String, id: String, notice: String?) throws -> Response {
        guard let inspector = inspectors.inspector else { return starting() }
        let message: InspectedMessage
        do { message = try inspector.message(sink: sink, id: id) } catch {
            return page("message", title: "Message", ["sink": sink, "id": id, "stateLabel": "not found", "notice": error.message],
                        status: error.kind == .notFound ? .notFound : .serviceUnavailable)
        }
        var view = Self.row(message, sink: sink)
        view["stateLabel"] = Self.label(message.state).lowercased()
        view["failing"] = message.state == .failing
        view["notice"] = notice as Any
        view["recordPKs"] = message.recordPKs.joined(separator: ", ")
        view["commitLSN"] = message.position.commitLSN.rawValue
        view["commitIdx"] = message.position.commitIndex
        view["hasOffset"] = message.offset != nil
        view["lastAttempt"] = message.lastAttemptAt.map(InspectedMessage.timestamp) as Any
        view["value"] = message.value.map { String(decoding: $0, as: UTF8.self) } as Any
        let errors = message.errors ?? []
        view["hasErrors"] = !errors.isEmpty
        view["errors"] = errors.map { ["at": InspectedMessage.timestamp($0.at), "error": $0.error] }
        return page("message", title: "Message \(id)", view)
    }

    // MARK: - Rendering

    private func page(_ template: String, title: String, _ values: [String: Any], loggedIn: Bool = true, refresh: Bool = true,
                      status: HTTPResponse.Status = .ok) -> Response {
        let body = library.render(Self.dropNils(values), withTemplate: template) ?? ""
        let sinks = (inspectors.inspector?.sinkNames ?? []).map { ["name": $0] }
        let html = library.render(["title": title, "body": body, "loggedIn": loggedIn, "canLogOut": !auth.isOpen,
                                   "sinks": sinks, "refresh": refresh, "ha": Self.dropNils(Self.ha(inspectors.ha.snapshot))],
                                  withTemplate: "layout") ?? ""
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }

    private func starting() -> Response {
        if inspectors.ha.snapshot.role == .standby {
            return page("overview", title: "Standby", ["database": "standing by: another instance streams this slot", "sinkCards": []])
        }
        return page("overview", title: "Starting", ["database": "starting…", "sinkCards": []], status: .serviceUnavailable)
    }

    /// The header's role line: this instance, its role, and the leader with its lease.
    static func ha(_ ha: HAStatus.Snapshot) -> [String: Any] {
        ["role": ha.role.rawValue, "standby": ha.role == .standby, "instance": ha.instance,
         "leader": ha.leader.map { holder in
             ["instance": holder.instance, "term": holder.term, "leaseExpiresAt": InspectedMessage.timestamp(holder.expiresAt)]
         } as Any]
    }

    /// Mustache would print a nil optional as "nil": leave such keys out, so sections stay closed.
    static func dropNils(_ value: Any) -> Any {
        if let dictionary = value as? [String: Any] {
            var kept: [String: Any] = [:]
            for (key, item) in dictionary {
                let mirror = Mirror(reflecting: item)
                if mirror.displayStyle == .optional {
                    guard let unwrapped = mirror.children.first?.value else { continue }
                    kept[key] = dropNils(unwrapped)
                } else {
                    kept[key] = dropNils(item)
                }
            }
            return kept
        }
        if let list = value as? [[String: Any]] { return list.map { dropNils($0) } }
        return value
    }

    static func row(_ message: InspectedMessage, sink: String) -> [String: Any] {
        ["sink": sink, "id": message.id, "state": message.state.rawValue, "table": message.table, "action": message.action ?? "",
         "key": message.key ?? "", "topic": message.topic, "deliverCount": message.deliverCount,
         "lastError": message.lastError as Any, "nextAttempt": message.nextAttemptAt.map(InspectedMessage.timestamp) as Any,
         "partition": message.partition.map { "\($0)" } ?? "", "offset": message.offset.map { "\($0)" } ?? "",
         "reason": message.reason as Any, "size": message.sizeBytes]
    }

    static func label(_ state: MessageState) -> String {
        switch state {
        case .inFlight: "In flight"
        case .waiting: "Waiting"
        case .failing: "Failing"
        case .delivered: "Delivered"
        case .cancelled: "Cancelled"
        }
    }

    static func bytes(_ count: UInt64) -> String {
        count < 10_000 ? "\(count) bytes" : count < 10_000_000 ? "\(count / 1_000) kB" : "\(count / 1_000_000) MB"
    }

    /// application/x-www-form-urlencoded fields.
    static func form(_ request: Request) async throws -> [String: String] {
        let buffer = try await request.body.collect(upTo: 64 * 1024)
        return FormFields.parse(String(buffer: buffer))
    }
}
