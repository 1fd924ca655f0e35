import Hummingbird
import Pipeline

/// A refusal of the API: its status and `{"error": "..."}`. Routes throw it (the router answers an
/// `HTTPResponseError` with its response); the token check returns it.
struct APIError: HTTPResponseError, Encodable {
    let status: HTTPResponse.Status
    let message: String

    enum CodingKeys: String, CodingKey { case message = "error" }

    init(_ status: HTTPResponse.Status, _ message: String) {
        self.status = status
        self.message = message
    }

    /// An inspector's or backfill manager's refusal: 404, 409, 400 or 503.
    init(_ error: InspectionError) {
        switch error.kind {
        case .notFound: self.init(.notFound, error.message)
        case .conflict: self.init(.conflict, error.message)
        case .badRequest: self.init(.badRequest, error.message)
        case .unavailable: self.init(.serviceUnavailable, error.message)
        }
    }

    static let starting = APIError(.serviceUnavailable, "sluice is starting: the pipeline is not running yet")

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = try context.responseEncoder.encode(self, from: request, context: context)
        response.status = status
        return response
    }
}
