extension ConsoleConfig {
    static let fieldNames = ["listen", "token"]

    /// `console: {listen, token}`; `listen` defaults to 127.0.0.1:7376 and `token` to none.
    init?(reading node: ConfigNode, at path: String, reader: inout ConfigReader) {
        guard let fields = reader.fields(node, at: path, allowed: Self.fieldNames) else { return nil }
        let listen = reader.string("listen", in: fields) ?? "127.0.0.1:7376"
        switch HostPort(parsing: listen) {
        case .some(let address) where address.port > 0: break
        case let address:
            reader.report(address == nil ? .invalidValue : .outOfRange, at: fields.path("listen"), quoting: listen,
                          "— write host:port, e.g. 127.0.0.1:7376")
        }
        self.init(listen: listen, token: reader.string("token", in: fields, secret: true) ?? "")
    }
}
