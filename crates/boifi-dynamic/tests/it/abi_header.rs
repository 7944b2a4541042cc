//! `src/abi.rs` against Envoy's own `abi.h` (vendored in `testdata/envoy-abi/`, with its source
//! and license): every `extern "C"` declaration and every exported hook must be in the header
//! with the same name, parameter count, parameter types and return type; the `repr(C)` structs
//! must have the header's fields; and every enum value the module writes or compares must be
//! the header's. The module's declarations are hand-written (Envoy's SDK is not published), so
//! this is what stands between a typo and undefined behaviour in Envoy.
//!
//! C types are compared as the Rust types they map to, through the header's typedefs: enums are
//! `u32` (a C enum is an `int`; every value used is small and positive), `size_t` is `usize`,
//! `char` is `u8`, a struct is its Rust `repr(C)` twin; pointers compare by pointee, not by
//! `const` (which has no effect on the ABI).

use std::collections::BTreeMap;

/// The vendored header's text.
fn header_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/envoy-abi/abi.h");
    std::fs::read_to_string(path).unwrap()
}

/// The module's unsafe module's text.
fn abi_rs_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/abi.rs");
    std::fs::read_to_string(path).unwrap()
}

/// A function's parameter types and return type, each as a Rust type name (`()` for none).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    params: Vec<String>,
    ret: String,
}

/// What the header declares: enumerators with their values, structs with their fields, and
/// functions, by name.
#[derive(Debug, Default)]
struct Header {
    enumerators: BTreeMap<String, i64>,
    structs: BTreeMap<String, Vec<(String, String)>>,
    functions: BTreeMap<String, Signature>,
}

/// The Rust twin of each header struct boifi declares.
const STRUCTS: [(&str, &str); 4] = [
    ("envoy_dynamic_module_type_envoy_buffer", "EnvoyBuffer"),
    ("envoy_dynamic_module_type_module_buffer", "ModuleBuffer"),
    (
        "envoy_dynamic_module_type_module_http_header",
        "ModuleHttpHeader",
    ),
    (
        "envoy_dynamic_module_type_envoy_http_header",
        "EnvoyHttpHeader",
    ),
];

/// C text without comments, preprocessor lines and the `extern "C" { .. }` of C++ builds.
fn strip_c(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('/') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if after.starts_with("//") {
            rest = after.find('\n').map_or("", |j| &after[j..]);
        } else if after.starts_with("/*") {
            rest = after.find("*/").map_or("", |j| &after[j + 2..]);
        } else {
            out.push('/');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out.lines()
        .filter(|l| {
            let l = l.trim();
            !l.starts_with('#') && l != "extern \"C\" {" && l != "}"
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits at `sep` outside braces and parentheses.
fn split_top(text: &str, sep: char) -> Vec<String> {
    let (mut parts, mut depth, mut current) = (Vec::new(), 0i32, String::new());
    for c in text.chars() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            _ => {}
        }
        if c == sep && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect()
}

/// A C declaration `TYPE NAME` as (name, Rust type of TYPE).
fn c_declarator(decl: &str, typedefs: &BTreeMap<String, String>) -> (String, String) {
    let decl = decl.replace('*', " * ");
    let mut tokens: Vec<&str> = decl
        .split_whitespace()
        .filter(|t| *t != "const" && *t != "struct" && *t != "enum")
        .collect();
    let name = tokens.pop().unwrap_or_default().to_string();
    (name, c_type(&tokens, typedefs))
}

/// The Rust type of C type tokens (`const` removed), e.g. `["size_t", "*"]` → `*usize`.
fn c_type(tokens: &[&str], typedefs: &BTreeMap<String, String>) -> String {
    let pointers = tokens.iter().filter(|t| **t == "*").count();
    let base = tokens
        .iter()
        .find(|t| **t != "*")
        .copied()
        .unwrap_or_default();
    let base = match base {
        "void" if pointers > 0 => "c_void".to_string(),
        "void" => "()".to_string(),
        "char" => "u8".to_string(),
        "bool" => "bool".to_string(),
        "size_t" => "usize".to_string(),
        "uint32_t" => "u32".to_string(),
        "uint64_t" => "u64".to_string(),
        "int64_t" => "i64".to_string(),
        other => typedefs
            .get(other)
            .cloned()
            .unwrap_or_else(|| format!("<unknown C type `{other}`>")),
    };
    format!("{}{base}", "*".repeat(pointers))
}

fn parse_header(text: &str) -> Header {
    let mut typedefs: BTreeMap<String, String> = BTreeMap::new();
    let mut header = Header::default();
    for statement in split_top(&strip_c(text), ';') {
        if let Some(rest) = statement.strip_prefix("typedef enum") {
            let (open, close) = (rest.find('{').unwrap(), rest.rfind('}').unwrap());
            let mut next = 0i64;
            for enumerator in split_top(&rest[open + 1..close], ',') {
                let (name, value) = match enumerator.split_once('=') {
                    Some((n, v)) => (n.trim().to_string(), v.trim().parse().unwrap()),
                    None => (enumerator.trim().to_string(), next),
                };
                header.enumerators.insert(name, value);
                next = value + 1;
            }
            typedefs.insert(rest[close + 1..].trim().to_string(), "u32".to_string());
        } else if let Some(rest) = statement.strip_prefix("typedef struct") {
            let (open, close) = (rest.find('{').unwrap(), rest.rfind('}').unwrap());
            let name = rest[close + 1..].trim().to_string();
            let fields = split_top(&rest[open + 1..close], ';')
                .iter()
                .map(|f| c_declarator(f, &typedefs))
                .collect();
            let twin = STRUCTS
                .iter()
                .find(|(c, _)| *c == name)
                .map_or_else(|| format!("<struct `{name}`>"), |(_, r)| r.to_string());
            typedefs.insert(name.clone(), twin);
            header.structs.insert(name, fields);
        } else if let Some(rest) = statement.strip_prefix("typedef") {
            let (name, ty) = c_declarator(rest, &typedefs);
            typedefs.insert(name, ty);
        } else if let (Some(open), Some(close)) = (statement.find('('), statement.rfind(')')) {
            let (name, ret) = c_declarator(&statement[..open], &typedefs);
            let params = split_top(&statement[open + 1..close], ',')
                .iter()
                .filter(|p| *p != "void")
                .map(|p| c_declarator(p, &typedefs).1)
                .collect();
            header.functions.insert(name, Signature { params, ret });
        }
    }
    header
}

/// A Rust type as written in `abi.rs`, in the form `c_type` gives.
fn rust_type(ty: &str) -> String {
    let ty = ty.trim();
    if let Some(pointee) = ty
        .strip_prefix("*const ")
        .or_else(|| ty.strip_prefix("*mut "))
    {
        return format!("*{}", rust_type(pointee));
    }
    match ty {
        "c_char" => "u8".to_string(),
        "" => "()".to_string(),
        other => other.to_string(),
    }
}

/// Every `fn envoy_dynamic_module_*` of `abi.rs`: the declarations of Envoy's callbacks and the
/// exported hooks.
fn rust_functions(text: &str) -> BTreeMap<String, Signature> {
    let mut functions = BTreeMap::new();
    for (at, _) in text.match_indices("fn envoy_dynamic_module_") {
        let decl = &text[at + 3..];
        let open = decl.find('(').unwrap();
        let name = decl[..open].to_string();
        let mut depth = 0;
        let close = decl
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                *c == ')' && depth == 0
            })
            .unwrap()
            .0;
        let params = split_top(&decl[open + 1..close], ',')
            .iter()
            .map(|p| rust_type(p.split_once(':').unwrap().1))
            .collect();
        let after = &decl[close + 1..];
        let end = after.find(['{', ';']).unwrap();
        let ret = rust_type(after[..end].trim().trim_start_matches("->"));
        functions.insert(name, Signature { params, ret });
    }
    functions
}

/// The fields of `struct NAME { .. }` in `abi.rs`.
fn rust_struct(text: &str, name: &str) -> Vec<(String, String)> {
    let start = text.find(&format!("struct {name} {{")).unwrap();
    let body = &text[start..];
    let (open, close) = (body.find('{').unwrap(), body.find('}').unwrap());
    split_top(&body[open + 1..close], ',')
        .iter()
        .map(|f| {
            let (n, t) = f.split_once(':').unwrap();
            (n.trim().to_string(), rust_type(t))
        })
        .collect()
}

/// The value of `const NAME: u32 = N;` in `abi.rs`.
fn rust_const(text: &str, name: &str) -> Option<i64> {
    let at = text.find(&format!("const {name}: u32 = "))?;
    let rest = &text[at..];
    let value = &rest[rest.find('=')? + 1..rest.find(';')?];
    value.trim().parse().ok()
}

/// Everything in which `abi_rs` disagrees with `header`, one line each.
fn mismatches(abi_rs: &str, header: &Header) -> Vec<String> {
    let mut wrong = Vec::new();
    let functions = rust_functions(abi_rs);
    for (name, ours) in &functions {
        match header.functions.get(name) {
            None => wrong.push(format!("`{name}` is not in abi.h")),
            Some(theirs) if theirs != ours => {
                wrong.push(format!("`{name}`: abi.rs {ours:?}, abi.h {theirs:?}"))
            }
            Some(_) => {}
        }
    }
    for (c_name, rust_name) in STRUCTS {
        let ours = rust_struct(abi_rs, rust_name);
        let theirs = header.structs.get(c_name).cloned().unwrap_or_default();
        if ours != theirs {
            wrong.push(format!(
                "`{rust_name}`: abi.rs {ours:?}, abi.h `{c_name}` {theirs:?}"
            ));
        }
    }
    let t = "envoy_dynamic_module_type_";
    let constants = [
        (
            "REQUEST_HEADER",
            format!("{t}http_header_type_RequestHeader"),
        ),
        ("METRICS_SUCCESS", format!("{t}metrics_result_Success")),
        (
            "ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE",
            format!("{t}attribute_id_ConnectionUriSanPeerCertificate"),
        ),
        (
            "ATTRIBUTE_XDS_CLUSTER_NAME",
            format!("{t}attribute_id_XdsClusterName"),
        ),
        (
            "ATTRIBUTE_XDS_FILTER_CHAIN_NAME",
            format!("{t}attribute_id_XdsFilterChainName"),
        ),
        (
            "HEADERS_CONTINUE",
            format!("{t}on_http_filter_request_headers_status_Continue"),
        ),
        (
            "HEADERS_CONTINUE",
            format!("{t}on_http_filter_response_headers_status_Continue"),
        ),
        (
            "HEADERS_STOP_ITERATION",
            format!("{t}on_http_filter_request_headers_status_StopIteration"),
        ),
        (
            "BODY_CONTINUE",
            format!("{t}on_http_filter_request_body_status_Continue"),
        ),
        (
            "BODY_CONTINUE",
            format!("{t}on_http_filter_response_body_status_Continue"),
        ),
        (
            "BODY_STOP_ITERATION_AND_BUFFER",
            format!("{t}on_http_filter_request_body_status_StopIterationAndBuffer"),
        ),
        (
            "TRAILERS_CONTINUE",
            format!("{t}on_http_filter_request_trailers_status_Continue"),
        ),
        (
            "TRAILERS_CONTINUE",
            format!("{t}on_http_filter_response_trailers_status_Continue"),
        ),
        (
            "TRAILERS_STOP_ITERATION",
            format!("{t}on_http_filter_request_trailers_status_StopIteration"),
        ),
    ];
    for (ours, theirs) in &constants {
        let (a, b) = (
            rust_const(abi_rs, ours),
            header.enumerators.get(theirs).copied(),
        );
        if a.is_none() || a != b {
            wrong.push(format!(
                "`{ours}` = {a:?} in abi.rs, `{theirs}` = {b:?} in abi.h"
            ));
        }
    }
    wrong
}

#[test]
fn abi_rs_matches_envoys_abi_h() {
    let (abi_rs, header) = (abi_rs_text(), parse_header(&header_text()));
    // The parsers found what is there (a parser that read nothing would find nothing wrong).
    let functions = rust_functions(&abi_rs);
    assert_eq!(
        functions.len(),
        abi_rs.matches("fn envoy_dynamic_module_").count()
    );
    assert!(functions.len() >= 38, "{functions:?}");
    assert!(
        header.functions.len() >= functions.len(),
        "{:?}",
        header.functions
    );
    let wrong = mismatches(&abi_rs, &header);
    assert!(
        wrong.is_empty(),
        "abi.rs disagrees with Envoy's abi.h:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn log_levels_and_abi_version_match_abi_h() {
    use boifi::abi::LogLevel;
    let text = header_text();
    let header = parse_header(&text);
    let levels = [
        (LogLevel::Trace, "Trace"),
        (LogLevel::Debug, "Debug"),
        (LogLevel::Info, "Info"),
        (LogLevel::Warn, "Warn"),
        (LogLevel::Error, "Error"),
    ];
    for (level, name) in levels {
        let theirs = header
            .enumerators
            .get(&format!("envoy_dynamic_module_type_log_level_{name}"));
        assert_eq!(Some(&(level as i64)), theirs, "{name}");
    }
    // The header's rule: "v0.1.y is guaranteed to be compatible with v0.2.x"; Envoy 1.40.0
    // reports v0.2.0, what the module answers (testdata/envoy-abi/README.md).
    let define = "#define ENVOY_DYNAMIC_MODULES_ABI_VERSION \"v0.";
    let at = text.find(define).unwrap() + define.len();
    let header_minor: u32 = text[at..at + 1].parse().unwrap();
    let abi_rs = abi_rs_text();
    let ours = "const ABI_VERSION: &[u8] = b\"v0.";
    let at = abi_rs.find(ours).unwrap() + ours.len();
    let module_minor: u32 = abi_rs[at..at + 1].parse().unwrap();
    assert!(
        module_minor == header_minor || module_minor == header_minor + 1,
        "module v0.{module_minor}, header v0.{header_minor}"
    );
}

/// Changes `from` to `to` in `abi.rs` and asserts that the check reports a line with `needle`.
fn assert_caught(from: &str, to: &str, needle: &str) {
    let (abi_rs, header) = (abi_rs_text(), parse_header(&header_text()));
    let changed = abi_rs.replacen(from, to, 1);
    assert_ne!(changed, abi_rs, "`{from}` is not in abi.rs");
    let wrong = mismatches(&changed, &header);
    assert!(wrong.iter().any(|w| w.contains(needle)), "{wrong:?}");
}

#[test]
fn a_changed_declaration_is_caught() {
    // A parameter dropped.
    assert_caught(
        "        result: *mut EnvoyBuffer,\n        index: usize,",
        "        result: *mut EnvoyBuffer,",
        "envoy_dynamic_module_callback_http_get_header",
    );
    // The neighbouring attribute id.
    assert_caught(
        "ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;",
        "ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 36;",
        "ConnectionUriSanPeerCertificate` = Some(37)",
    );
}
