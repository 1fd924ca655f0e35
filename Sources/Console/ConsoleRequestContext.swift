import Hummingbird

/// The console's request context: what a route returns as `ResponseEncodable` (and an `APIError`) is
/// written by `APIResponseEncoder`.
struct ConsoleRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage

    init(source: ApplicationRequestContextSource) {
        coreContext = CoreRequestContextStorage(source: source)
    }

    var responseEncoder: APIResponseEncoder { APIResponseEncoder() }
}

/// The API's answers: JSON in field order (`OrderedJSONEncoder`) ending in a newline, as
/// `application/json; charset=utf-8`, never cached (states and counts change by the second).
struct APIResponseEncoder: ResponseEncoder {
    func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        var body = try OrderedJSONEncoder().encode(value)
        body.append(UInt8(ascii: "\n"))
        return Response(status: .ok, headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
