//! One table of policy names accepted and refused, tried by the server's tests (by URL) and
//! the CLI's tests (`validate`, apply, get, delete), so both answer for the same names.

/// `(name, accepted)`: Kubernetes-style names, the legacy upper case and `_`, and what must
/// never be a name (reserved paths, empty parts, characters that are not URL-safe).
pub fn policy_names() -> Vec<(String, bool)> {
    let fixed: &[(&str, bool)] = &[
        ("frontend.v2", true),
        ("a", true),
        ("checkout-abort", true),
        ("Legacy_Policy", true),
        ("UPPER.Case_1", true),
        ("_underscored_", true),
        ("x.y.z", true),
        ("", false),
        ("status", false),
        ("create", false),
        ("a..b", false),
        (".hidden", false),
        ("trailing.", false),
        ("-dash", false),
        ("dash-", false),
        ("a.-b", false),
        ("with space", false),
        ("a/b", false),
        ("a%2Fb", false),
        ("ümlaut", false),
        ("q?x=1", false),
    ];
    let longest = [
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61),
    ]
    .join(".");
    let mut names: Vec<(String, bool)> =
        fixed.iter().map(|(n, ok)| ((*n).to_owned(), *ok)).collect();
    names.push((format!("{longest}e"), false));
    names.push((longest, true));
    names.push(("p".repeat(64), false));
    names
}
