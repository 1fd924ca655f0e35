import Hummingbird
import Pipeline
import SluiceCore

/// JSON answers of the API; every error is `{"error": "..."}`.
enum JSONResponse {
    static func ok(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        var body = bytes
        body.append(UInt8(ascii: "\n"))
        return Response(status: status, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        var json = JSONWriter(capacity: 64 + message.utf8.count)
        json.raw("{\"error\":")
        json.string(message)
        json.raw(UInt8(ascii: "}"))
        return ok(json.bytes, status: status)
    }

    /// An inspector's or backfill manager's refusal: 404, 409, 400 or 503.
    static func error(_ error: InspectionError) -> Response {
        switch error.kind {
        case .notFound: self.error(.notFound, error.message)
        case .conflict: self.error(.conflict, error.message)
        case .badRequest: self.error(.badRequest, error.message)
        case .unavailable: self.error(.serviceUnavailable, error.message)
        }
    }
}
