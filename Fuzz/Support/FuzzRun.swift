#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// What every fuzz target shares: how a broken promise is reported, and the replay mode that
/// the same executable has when it is built without libFuzzer (`swift run FuzzX FILE|DIR…`).
public enum FuzzRun {
    /// An oracle failed: says why on stderr and aborts, so libFuzzer keeps the input as a crash.
    public static func require(_ condition: Bool, _ message: @autoclosure () -> String,
                               file: StaticString = #fileID, line: UInt = #line) {
        guard !condition else { return }
        FileHandle.standardError.write(Data("fuzz oracle failed at \(file):\(line): \(message())\n".utf8))
        abort()
    }

    /// The bytes libFuzzer hands over (a null pointer when the input is empty).
    public static func buffer(_ data: UnsafePointer<UInt8>?, _ size: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size)
    }

    /// Runs `body` on every file named on the command line (directories: every file in them),
    /// e.g. to replay a crash input or a corpus without sanitizers.
    public static func replay(_ body: (UnsafeRawBufferPointer) -> Void) {
        let arguments = CommandLine.arguments.dropFirst()
        guard !arguments.isEmpty else {
            print("usage: \(CommandLine.arguments[0]) FILE|DIR… — runs the fuzz target once per input file")
            print("(built with scripts/fuzz, the same target runs under libFuzzer)")
            exit(2)
        }
        var count = 0
        for argument in arguments {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: argument, isDirectory: &isDirectory) else {
                print("\(argument): no such file or directory")
                exit(2)
            }
            let files = isDirectory.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: argument)) ?? []).sorted().map { argument + "/" + $0 }
                : [argument]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                data.withUnsafeBytes { body($0) }
                count += 1
            }
        }
        print("ran \(count) input(s), no failure")
    }
}

