use super::*;

const CI: &str = "ci-token-0123456789abcdef";
const SIDECARS: &str = "sidecar-token-0123456789";

fn text() -> String {
    format!(
        "tokens:\n  - name: ci\n    token: {CI}\n    may: [read, write]\n    namespaces: [demo, shop]\n  - name: sidecars\n    token: \"{SIDECARS}\"\n    may: [read]\n  - name: oncall\n    token: oncall-token-0123456789\n    may: [halt, read, write]\n    namespaces: [\"*\"]\n"
    )
}

fn problem(yaml: &str) -> String {
    parse_credentials(yaml, "creds.yaml")
        .unwrap_err()
        .to_string()
}

#[test]
fn a_file_names_tokens_with_permissions_and_namespaces() {
    let creds = parse_credentials(&text(), "creds.yaml").unwrap();
    assert_eq!(creds.len(), 3);
    let ci = &creds[0];
    assert_eq!(ci.name, "ci");
    assert_eq!(ci.digest(), &token_digest(CI.as_bytes()));
    assert!(ci.grant.may(Permission::Write) && !ci.grant.may(Permission::Halt));
    assert!(ci.grant.namespaces.allows(Some("shop")));
    assert!(!ci.grant.namespaces.allows(Some("payments")));
    assert!(!ci.grant.namespaces.allows(None), "`*` is outside a list");
    let sidecars = &creds[1];
    assert_eq!(sidecars.grant.may, [Permission::Read].into());
    assert!(!sidecars.grant.namespaces.allows(Some("demo")));
    assert_eq!(creds[2].grant, Grant::everything());
    check_unique(&creds).unwrap();
}

#[test]
fn mistakes_are_refused_with_the_entry_and_never_the_token() {
    let base = "tokens:\n  - name: ci\n    token: ci-token-0123456789abcdef\n";
    let cases = [
        (
            format!("{base}    may: [write]\n"),
            "`namespaces` is missing",
        ),
        (
            format!("{base}    may: [read]\n    namespaces: [demo]\n"),
            "only limits writes",
        ),
        (format!("{base}    may: []\n"), "`may` is empty"),
        (
            format!("{base}    may: [delete]\n"),
            "unknown variant `delete`",
        ),
        (
            format!("{base}    may: [write]\n    namespaces: []\n"),
            "`namespaces` is empty",
        ),
        (
            format!("{base}    may: [write]\n    namespaces: [\"*\", demo]\n"),
            "stands alone",
        ),
        (
            format!("{base}    may: [write]\n    namespaces: [Demo.x]\n"),
            "namespaces[0]: `Demo.x`",
        ),
        (
            format!("{base}    may: [read]\n    namespace: [demo]\n"),
            "unknown field `namespace`",
        ),
        (
            "tokens:\n  - name: ci\n    token: short\n    may: [read]\n".to_owned(),
            "at least 16",
        ),
        (
            "tokens:\n  - name: ci\n    token: 12345678901234567890\n    may: [read]\n".to_owned(),
            "quote it",
        ),
        (
            "tokens:\n  - name: ci\n    token: \"has space 0123456789\"\n    may: [read]\n"
                .to_owned(),
            "printable ASCII",
        ),
        (
            "tokens:\n  - name: \"c i\"\n    token: ci-token-0123456789abcdef\n    may: [read]\n"
                .to_owned(),
            "`name` must be",
        ),
    ];
    for (yaml, expected) in cases {
        let message = problem(&yaml);
        assert!(message.contains(expected), "{yaml}\n→ {message}");
        assert!(message.starts_with("credentials `creds.yaml`"), "{message}");
        for secret in [
            "ci-token-0123456789abcdef",
            "12345678901234567890",
            "0123456789",
        ] {
            assert!(!message.contains(secret), "the token leaked: {message}");
        }
    }
    assert!(problem(&format!("{base}    may: [write]\n")).contains("tokens[0] (`ci`)"));
}

#[test]
fn names_and_secrets_must_be_unique() {
    let mut creds = parse_credentials(&text(), "a").unwrap();
    let mut again = parse_credentials(&text(), "b").unwrap();
    creds.push(again.remove(0));
    assert_eq!(
        check_unique(&creds).unwrap_err().to_string(),
        "token name `ci` is given twice: names must be unique"
    );
    let copy = Credential::unchecked("ci2".to_owned(), CI, Grant::everything());
    let mut creds = parse_credentials(&text(), "a").unwrap();
    creds.push(copy);
    assert_eq!(
        check_unique(&creds).unwrap_err().to_string(),
        "tokens `ci` and `ci2` have the same secret: give each its own"
    );
}

#[test]
fn a_directory_of_mounted_secrets_is_read_in_name_order_skipping_hidden_entries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b-sidecars.yaml"),
        format!("tokens:\n  - name: sidecars\n    token: {SIDECARS}\n    may: [read]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("a-ci.yaml"),
        format!(
            "tokens:\n  - name: ci\n    token: {CI}\n    may: [write]\n    namespaces: [demo]\n"
        ),
    )
    .unwrap();
    // What Kubernetes puts beside a Secret's keys.
    std::fs::create_dir(dir.path().join("..data")).unwrap();
    std::fs::write(dir.path().join(".hidden"), "not yaml: [").unwrap();
    let creds = load_credentials(dir.path()).unwrap();
    let names: Vec<&str> = creds.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["ci", "sidecars"]);

    let empty = tempfile::tempdir().unwrap();
    assert!(load_credentials(empty.path())
        .unwrap_err()
        .to_string()
        .contains("no token is defined"));
    assert!(matches!(
        load_credentials(&dir.path().join("missing")),
        Err(CredentialsError::Read { .. })
    ));
}

#[test]
fn debug_output_names_tokens_but_never_shows_them() {
    let creds = parse_credentials(&text(), "a").unwrap();
    let shown = format!("{creds:?}");
    assert!(
        shown.contains("ci") && !shown.contains(CI) && !shown.contains(SIDECARS),
        "{shown}"
    );
}
