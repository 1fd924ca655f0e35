/// One problem in a configuration, naming the field: `sinks[0].destination.hosts: "kafka:99999" — port must be 1-65535`.
/// Code reads `code` and `path`; a user reads `description`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem this is, for code that decides what to do about it (tests, the console).
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: Sendable, Hashable {
            case unknownField, missingField, wrongType, invalidValue, outOfRange, empty
            case duplicate, conflict, environment, unreadableFile
            case undeclaredFunction, wrongFunctionType, invalidFunction
            case databaseSetup
        }

        private let base: Base

        private init(_ base: Base) {
            self.base = base
        }

        /// A key the section does not have (the message suggests the nearest one).
        public static let unknownField = Code(.unknownField)
        /// A required field is absent, or one that another field needs.
        public static let missingField = Code(.missingField)
        /// A mapping, list or single value where another shape belongs.
        public static let wrongType = Code(.wrongType)
        /// A value of the right shape that is not one of the accepted forms.
        public static let invalidValue = Code(.invalidValue)
        /// A number, port, duration or length outside its bounds.
        public static let outOfRange = Code(.outOfRange)
        /// A value or list that must hold something is empty.
        public static let empty = Code(.empty)
        /// A name used twice, or a setting given in two places.
        public static let duplicate = Code(.duplicate)
        /// Settings that cannot be used together, or that disagree with another section.
        public static let conflict = Code(.conflict)
        /// A `${VAR}` that is not set, or a `${` that is not closed.
        public static let environment = Code(.environment)
        /// A file the configuration points to cannot be read.
        public static let unreadableFile = Code(.unreadableFile)
        /// A sink names a function that is not declared under `functions:`.
        public static let undeclaredFunction = Code(.undeclaredFunction)
        /// A sink names a declared function of another type.
        public static let wrongFunctionType = Code(.wrongFunctionType)
        /// A declared function does not compile or does not define its entry point.
        public static let invalidFunction = Code(.invalidFunction)
        /// The database is not set up as the configuration needs (wal_level, publication, slot, tables).
        public static let databaseSetup = Code(.databaseSetup)

        public var description: String {
            switch base {
            case .unknownField: "unknownField"
            case .missingField: "missingField"
            case .wrongType: "wrongType"
            case .invalidValue: "invalidValue"
            case .outOfRange: "outOfRange"
            case .empty: "empty"
            case .duplicate: "duplicate"
            case .conflict: "conflict"
            case .environment: "environment"
            case .unreadableFile: "unreadableFile"
            case .undeclaredFunction: "undeclaredFunction"
            case .wrongFunctionType: "wrongFunctionType"
            case .invalidFunction: "invalidFunction"
            case .databaseSetup: "databaseSetup"
            }
        }
    }

    public var code: Code
    /// The field, e.g. `sinks[0].destination.hosts`; empty when the message names its own place.
    public var path: String
    /// What is wrong and what to do, as printed after the path.
    public var message: String
    /// The value the message quotes (as written, after `${VAR}` interpolation), or the variable or
    /// function it names; nil when it quotes none. Never a secret.
    public var value: String?
    /// The known name closest to a misspelt one, which the message offers ("did you mean topic?").
    public var suggestion: String?

    public init(_ code: Code, at path: String, _ message: String, value: String? = nil, suggestion: String? = nil) {
        self.code = code
        self.path = path
        self.message = message
        self.value = value
        self.suggestion = suggestion
    }

    /// A problem with a value as written: the message starts with it, quoted (`"kafka:99999" — port must be 1-65535`).
    public init(_ code: Code, at path: String, quoting value: String, _ detail: String, suggestion: String? = nil) {
        self.init(code, at: path, "\"\(value)\" \(detail)", value: value, suggestion: suggestion)
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

/// Every problem found in a configuration, one line each.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public init(errors: [ConfigError]) { self.errors = errors }
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
