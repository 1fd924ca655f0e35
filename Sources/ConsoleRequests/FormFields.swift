import Foundation

/// An `application/x-www-form-urlencoded` body (the login form): `name=value` pairs joined by `&`,
/// `+` for a space, percent escapes. A field without `=` has an empty value; an undecodable part
/// reads as empty; the last of repeated names wins.
public enum FormFields {
    public static func parse(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (part: Substring) in String(part).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            fields[decode(parts[0])] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }
}
