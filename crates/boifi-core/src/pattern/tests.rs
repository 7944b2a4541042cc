use alloc::string::{String, ToString};
use alloc::vec::Vec;

use proptest::prelude::*;

use super::*;

fn matches(pattern: &str, value: &str) -> bool {
    Pattern::new(pattern)
        .unwrap_or_else(|e| panic!("`{pattern}`: {e}"))
        .is_match(value)
}

fn error(pattern: &str) -> String {
    match Pattern::new(pattern) {
        Ok(p) => panic!("`{pattern}` compiled to {} instructions", p.instructions()),
        Err(e) => e.to_string(),
    }
}

/// Patterns, values and whether the pattern matches the value.
const MATCH_CASES: &[(&str, &str, bool)] = &[
    ("", "", true),
    ("", "abc", true),
    ("abc", "xxabcxx", true),
    ("abc", "ab", false),
    (r"^/api/v1/.*$", "/api/v1/users", true),
    (r"^/api/v1/.*$", "/x/api/v1/", false),
    (r"\.json$", "/a.json", true),
    (r"\.json$", "/ajson", false),
    (r"a\/b\-c\*", "a/b-c*", true),
    (r"\\", r"a\b", true),
    (r"\t\n\r", "\t\n\r", true),
    (r"\x41\x{1F600}", "A😀", true),
    ("a.c", "abc", true),
    ("a.c", "a\nc", false),
    ("(?s)a.c", "a\nc", true),
    ("^.$", "é", true),
    ("^..$", "é", false),
    ("[abc]", "xbx", true),
    ("[^abc]", "abc", false),
    ("[^abc]", "abcd", true),
    ("^[a-z0-9_]+$", "user_42", true),
    ("^[a-z0-9_]+$", "User", false),
    (r"^[\d\-]+$", "12-34", true),
    (r"^[\w.]+$", "a.b_c", true),
    (r"^[\W]$", "é", true),
    (r"[]a]", "]", true),
    (r"[^]a]", "]", false),
    (r"[a-]", "-", true),
    (r"^\d+$", "0123456789", true),
    (r"^\d+$", "١", false),
    (r"^\w+$", "héllo", false),
    (r"^\s$", "\u{b}", true),
    (r"^\S+$", "é!", true),
    (r"^\D\W\S$", "a!x", true),
    ("^(GET|POST)$", "POST", true),
    ("^(GET|POST)$", "PUT", false),
    ("^(?:a|b)+$", "abba", true),
    ("^(?P<v>v[0-9]+)$", "v12", true),
    ("^(?<v>v[0-9]+)$", "v12", true),
    ("^a{3}$", "aaa", true),
    ("^a{3}$", "aa", false),
    ("^a{2,}$", "aaaaa", true),
    ("^a{2,}$", "a", false),
    ("^a{1,3}$", "aaa", true),
    ("^a{1,3}$", "aaaa", false),
    ("^a{0}$", "", true),
    ("^a*?b+?c??d{1,2}?$", "bd", true),
    ("(?i)^get$", "GeT", true),
    ("(?i)^[a-c]+$", "AbC", true),
    ("(?i)^[^a-c]+$", "C", false),
    ("^x(?i)abc$", "xABC", true),
    ("^x(?i)abc$", "XABC", false),
    ("^(?i:a)b$", "Ab", true),
    ("^(?i:a)b$", "AB", false),
    ("^(?i)a(?-i)b$", "Ab", true),
    ("^(?i)a(?-i)b$", "AB", false),
    ("^((?i)a)b$", "AB", false),
    ("(?i)é", "É", false),
    (r"\bcat\b", "a cat!", true),
    (r"\bcat\b", "concat", false),
    (r"\Bcat", "concat", true),
    (r"\Acat\z", "cat", true),
    ("^$", "", true),
    ("^$", "a", false),
    ("$^", "", true),
    ("a|", "zzz", true),
    ("(a*)*b", "aaab", true),
    ("(a|ab)(c|bcd)(d*)", "abcd", true),
    ("中文", "这是中文", true),
];

#[test]
fn supported_syntax_matches_like_the_regex_crate() {
    for &(pattern, value, expected) in MATCH_CASES {
        assert_eq!(
            matches(pattern, value),
            expected,
            "`{pattern}` on {value:?}"
        );
        let reference = regex::RegexBuilder::new(pattern)
            .unicode(false)
            .build()
            .ok()
            .or_else(|| regex::Regex::new(pattern).ok());
        if let Some(reference) = reference {
            if value.is_ascii() && pattern.is_ascii() {
                assert_eq!(
                    reference.is_match(value),
                    expected,
                    "regex: `{pattern}` on {value:?}"
                );
            }
        }
    }
}

#[test]
fn unsupported_constructs_are_named_with_their_offset() {
    let cases: &[(&str, &str)] = &[
        ("(unclosed", "unclosed group `(` at byte 0"),
        ("a(b(c)", "unclosed group `(` at byte 1"),
        ("a)", "unopened group `)` at byte 1"),
        ("[abc", "unclosed class `[` at byte 0"),
        ("*a", "repetition `*` at byte 0 has nothing to repeat"),
        ("a|+", "repetition `+` at byte 2 has nothing to repeat"),
        ("(?i)*", "repetition `*` at byte 4 has nothing to repeat"),
        ("a**", "repetition `*` at byte 2 follows another repetition (group the first one)"),
        ("a{2,1}", "counted repetition at byte 1: the maximum 1 is below the minimum 2"),
        ("a{1001}", "counted repetition at byte 1: 1001 is more than the limit of 1000"),
        ("a{x}", "counted repetition at byte 1 is not `{n}`, `{n,}` or `{n,m}` (write a literal `{` as `\\{`)"),
        ("a{,2}", "counted repetition at byte 1 is not `{n}`, `{n,}` or `{n,m}` (write a literal `{` as `\\{`)"),
        ("(?=a)", "look-around at byte 0 is not supported"),
        ("x(?!a)", "look-around at byte 1 is not supported"),
        ("(?<=a)b", "look-around at byte 0 is not supported"),
        ("(?<!a)b", "look-around at byte 0 is not supported"),
        (r"(a+)\1", "backreference at byte 4 is not supported"),
        ("(?P<n>a)(?P=n)", "backreference at byte 8 is not supported"),
        (r"\p{L}", "unicode class `\\p` at byte 0 is not supported"),
        (r"[\P{L}]", "unicode class `\\P` at byte 1 is not supported"),
        (r"\y", "escape `\\y` at byte 0 is not supported"),
        (r"\<", "escape `\\<` at byte 0 is not supported"),
        (r"[\b]", "escape `\\b` at byte 1 is not supported"),
        (r"ab\", "trailing `\\` at byte 2"),
        (r"\xZZ", "escape at byte 0 is not `\\xHH` or `\\x{H...}` with a valid character"),
        (r"\x{D800}", "escape at byte 0 is not `\\xHH` or `\\x{H...}` with a valid character"),
        ("(?m)^a", "flag `m` at byte 2 is not supported (only `i` and `s`)"),
        ("(?x: a )", "flag `x` at byte 2 is not supported (only `i` and `s`)"),
        ("(?P<>a)", "group name at byte 0 is empty, not closed by `>`, or not made of letters, digits and `_`"),
        ("(?<1a>a)", "group name at byte 0 is empty, not closed by `>`, or not made of letters, digits and `_`"),
        ("[[:alpha:]]", "`[` at byte 1 inside a class is not supported (nested classes): write `\\[`"),
        ("[a&&b]", "class operation `&&` at byte 2 is not supported: write `\\&`"),
        ("[a--b]", "class operation `--` at byte 2 is not supported: write `\\-`"),
        ("x[z-a]", "class range `z-a` at byte 2 is backwards"),
        (r"[a-\d]", "class range at byte 1 does not end in a character"),
        (r"\w{1000}\w{1000}", "it compiles to more than the limit of 2000 instructions"),
        ("(a{1000}){1000}", "it compiles to more than the limit of 2000 instructions"),
    ];
    for &(pattern, message) in cases {
        assert_eq!(error(pattern), message, "`{pattern}`");
    }
}

#[test]
fn anchored_patterns_stop_when_no_thread_is_left() {
    let value = format!("b{}", "a".repeat(10_000));
    for pattern in ["^a", "^a|^b+c", "(^a)+", "(?:^)ab", "^(a+)+$"] {
        let compiled = Pattern::new(pattern).unwrap();
        assert!(compiled.program.anchored, "`{pattern}`");
        let mut steps = 0;
        assert!(!compiled.search(&value, &mut steps));
        assert!(steps < 20, "`{pattern}`: {steps} steps");
    }
    for pattern in ["a|^b", "(^a)*", "a^", "(?:a?)^b"] {
        assert!(
            !Pattern::new(pattern).unwrap().program.anchored,
            "`{pattern}`"
        );
    }
    assert!(matches("(?:a?)^b", "b"));
    assert!(!matches("(?:a?)^b", "ab"));
}

#[test]
fn nesting_is_bounded_without_recursion() {
    let ok = format!("{}a{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
    assert!(matches(&ok, "a"));
    let deep = format!(
        "{}a{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert_eq!(
        error(&deep),
        format!("group at byte {MAX_NESTING} nests deeper than the limit of {MAX_NESTING}")
    );
    // Far deeper than any stack could hold when parsed recursively.
    let hostile = "(".repeat(100_000);
    assert!(Pattern::new(&hostile).is_err());
    let hostile = "(?:a*)*".repeat(150);
    assert!(Pattern::new(&hostile).is_ok());
}

#[test]
fn every_pattern_within_the_length_limit_without_counts_compiles() {
    let len = crate::policy::MAX_REGEX_LEN;
    for pattern in [
        "a".repeat(len),
        ".*".repeat(len / 2),
        "a|".repeat(len / 2),
        "[a-z]?".repeat(len / 6),
        "(?:a)*".repeat(len / 6),
    ] {
        let compiled = Pattern::new(&pattern).unwrap_or_else(|e| panic!("{e}"));
        assert!(compiled.instructions() <= MAX_INSTRUCTIONS);
    }
}

/// The search visits each instruction at most twice per character (once while adding states,
/// once while stepping), plus a round at the end: linear in the value whatever the pattern.
#[test]
fn pathological_patterns_run_in_linear_time() {
    let value = "a".repeat(10_000);
    for pattern in [
        "(a*)*b",
        "(a|a)*c",
        "^(a+)+$",
        "(?:a?){30}a{30}b",
        "(x+x+)+y",
        "(.*)*!",
    ] {
        let compiled = Pattern::new(pattern).unwrap();
        let haystack = format!("{value}-");
        let mut steps = 0;
        assert!(!compiled.search(&haystack, &mut steps), "`{pattern}`");
        let bound = 2 * compiled.instructions() as u64 * (haystack.len() as u64 + 1);
        assert!(steps <= bound, "`{pattern}`: {steps} steps > {bound}");
        assert!(steps >= haystack.len() as u64, "`{pattern}`: {steps} steps");
    }
}

// ---------------------------------------------------------------------------------------------
// Differential test against the `regex` crate.

/// A generated pattern, rendered once for this engine and once for `regex` (whose `\d` `\w`
/// `\s` `\b` are Unicode-aware: the reference spells out the ASCII classes instead).
#[derive(Debug, Clone)]
enum Gen {
    Lit(char),
    Dot,
    Perl(char),
    Class { negated: bool, items: Vec<Item> },
    Look(&'static str),
    Group(&'static str, Box<Gen>),
    Concat(Vec<Gen>),
    Alt(Vec<Gen>),
    Repeat(Box<Gen>, String),
}

#[derive(Debug, Clone)]
enum Item {
    Char(char),
    Range(char, char),
    Perl(char),
}

const ASCII_ALPHABET: &[char] = &[
    'a', 'b', 'c', 'A', 'B', 'z', '0', '1', '_', ' ', '-', '.', '/', '\n',
];
const WIDE_ALPHABET: &[char] = &['é', 'ü', 'ж', '中', '😀'];
const PUNCT: &[char] = &[
    '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '^', '$', '\\', '/', '-', '#',
];

fn perl_ascii(c: char) -> &'static str {
    match c {
        'd' => "0-9",
        'w' => "0-9A-Za-z_",
        's' => r"\t\n\x0B\x0C\r ",
        _ => unreachable!(),
    }
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str(r"\n"),
        c if c.is_ascii_punctuation() => {
            out.push('\\');
            out.push(c);
        }
        c => out.push(c),
    }
}

impl Gen {
    fn render(&self, out: &mut String, reference: bool, names: &mut u32) {
        match self {
            Gen::Lit(c) => push_char(out, *c),
            Gen::Dot => out.push('.'),
            Gen::Perl(c) if reference => {
                let lower = c.to_ascii_lowercase();
                let neg = if c.is_ascii_uppercase() { "^" } else { "" };
                out.push_str(&format!("[{neg}{}]", perl_ascii(lower)));
            }
            Gen::Perl(c) => {
                out.push('\\');
                out.push(*c);
            }
            Gen::Class { negated, items } => {
                out.push('[');
                if *negated {
                    out.push('^');
                }
                for item in items {
                    match item {
                        Item::Char(c) => push_char(out, *c),
                        Item::Range(a, b) => {
                            push_char(out, *a);
                            out.push('-');
                            push_char(out, *b);
                        }
                        Item::Perl(c) if reference => {
                            let lower = c.to_ascii_lowercase();
                            if c.is_ascii_uppercase() {
                                out.push_str(&format!("[^{}]", perl_ascii(lower)));
                            } else {
                                out.push_str(perl_ascii(lower));
                            }
                        }
                        Item::Perl(c) => {
                            out.push('\\');
                            out.push(*c);
                        }
                    }
                }
                out.push(']');
            }
            Gen::Look(look) if reference && look.starts_with('\\') => {
                out.push_str(&format!("(?-u:{look})"));
            }
            Gen::Look(look) => out.push_str(look),
            Gen::Group(open, inner) => {
                // The `regex` crate refuses duplicate names: number them.
                if let Some(named) = open.strip_suffix("g>") {
                    *names += 1;
                    out.push_str(&format!("{named}g{names}>"));
                } else {
                    out.push_str(open);
                }
                inner.render(out, reference, names);
                out.push(')');
            }
            Gen::Concat(items) => items.iter().for_each(|i| i.render(out, reference, names)),
            Gen::Alt(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    item.render(out, reference, names);
                }
            }
            Gen::Repeat(inner, quantifier) => {
                inner.render(out, reference, names);
                out.push_str(quantifier);
            }
        }
    }

    fn text(&self, reference: bool) -> String {
        let mut out = String::new();
        self.render(&mut out, reference, &mut 0);
        out
    }
}

fn literal_char(wide: bool) -> BoxedStrategy<char> {
    let mut options: Vec<char> = ASCII_ALPHABET.to_vec();
    options.extend_from_slice(PUNCT);
    if wide {
        options.extend_from_slice(WIDE_ALPHABET);
    }
    proptest::sample::select(options).boxed()
}

fn class_item(wide: bool) -> BoxedStrategy<Item> {
    let range_ends: Vec<char> = if wide {
        ['a', 'c', 'z', 'A', 'Z', '0', '9', '-', 'é', 'ж', '😀'].to_vec()
    } else {
        ['a', 'c', 'z', 'A', 'Z', '0', '9', '-', '_'].to_vec()
    };
    let ends = proptest::sample::select(range_ends);
    prop_oneof![
        3 => literal_char(wide).prop_map(Item::Char),
        2 => (ends.clone(), ends).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
        1 => proptest::sample::select(&['d', 'w', 's', 'D', 'W', 'S'][..]).prop_map(Item::Perl),
    ]
    .boxed()
}

fn quantifier() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just("*".to_string()),
        Just("+".to_string()),
        Just("?".to_string()),
        (0u32..4).prop_map(|n| format!("{{{n}}}")),
        (0u32..3).prop_map(|n| format!("{{{n},}}")),
        (0u32..3, 0u32..3).prop_map(|(n, extra)| format!("{{{n},{}}}", n + extra)),
    ];
    (base, any::<bool>()).prop_map(|(q, lazy)| if lazy { q + "?" } else { q })
}

fn generated(wide: bool, fold: bool) -> impl Strategy<Value = Gen> {
    let leaf = prop_oneof![
        6 => literal_char(wide).prop_map(Gen::Lit),
        1 => Just(Gen::Dot),
        1 => proptest::sample::select(&['d', 'w', 's', 'D', 'W', 'S'][..]).prop_map(Gen::Perl),
        2 => (any::<bool>(), proptest::collection::vec(class_item(wide), 1..4))
            .prop_map(|(negated, items)| Gen::Class { negated, items }),
        1 => proptest::sample::select(&["^", "$", r"\b", r"\B", r"\A", r"\z"][..]).prop_map(Gen::Look),
    ];
    let groups: Vec<&'static str> = if fold {
        ["(", "(?:", "(?P<g>", "(?<g>", "(?i:", "(?-i:"].to_vec()
    } else {
        ["(", "(?:", "(?P<g>", "(?<g>", "(?s:"].to_vec()
    };
    leaf.prop_recursive(4, 32, 4, move |inner| {
        let atom = prop_oneof![
            3 => inner.clone(),
            1 => (proptest::sample::select(groups.clone()), inner.clone())
                .prop_map(|(open, g)| Gen::Group(open, Box::new(g))),
        ];
        prop_oneof![
            3 => proptest::collection::vec(inner.clone(), 2..5).prop_map(Gen::Concat),
            2 => proptest::collection::vec(inner.clone(), 2..4).prop_map(Gen::Alt),
            3 => (atom, quantifier()).prop_map(|(a, q)| {
                // A repetition applies to an atom or a group, never to another repetition.
                let a = match a {
                    g @ (Gen::Lit(_) | Gen::Dot | Gen::Perl(_) | Gen::Class { .. } | Gen::Group(..)) => g,
                    other => Gen::Group("(?:", Box::new(other)),
                };
                Gen::Repeat(Box::new(a), q)
            }),
            1 => (proptest::sample::select(groups.clone()), inner)
                .prop_map(|(open, g)| Gen::Group(open, Box::new(g))),
        ]
    })
}

fn haystack(wide: bool) -> BoxedStrategy<String> {
    let mut alphabet: Vec<char> = ASCII_ALPHABET.to_vec();
    alphabet.extend_from_slice(&['*', '(', '[', ']', '\\', '\t', 'C', '9']);
    if wide {
        alphabet.extend_from_slice(WIDE_ALPHABET);
        alphabet.extend_from_slice(&['É', 'K', 'ſ']);
    }
    proptest::collection::vec(proptest::sample::select(alphabet), 0..14)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

fn check_case(gen: &Gen, prefix: &str, values: &[String]) -> Result<(), TestCaseError> {
    let ours = format!("{prefix}{}", gen.text(false));
    let theirs = format!("{prefix}{}", gen.text(true));
    let pattern =
        Pattern::new(&ours).map_err(|e| TestCaseError::fail(format!("`{ours}` refused: {e}")))?;
    // The bytes flavour: `regex::Regex` (str) refuses empty matches that split a UTF-8
    // sequence, which made it answer `\B|\D` on "9é0" wrongly.
    let reference = regex::bytes::Regex::new(&theirs)
        .map_err(|e| TestCaseError::fail(format!("reference `{theirs}` refused: {e}")))?;
    for value in values {
        prop_assert_eq!(
            pattern.is_match(value),
            matches_at_a_char_boundary(&reference, value),
            "`{}` (reference `{}`) on {:?}",
            ours,
            theirs,
            value
        );
    }
    Ok(())
}

/// Whether `reference` has a match in `value` that starts where a character starts. The engine
/// walks characters, so its positions are the character boundaries; the bytes flavour also
/// tries the positions inside a UTF-8 sequence, where an empty `\B` holds (both neighbours are
/// non-word bytes): `\B|c|aa` on "Aéa" matches there and nowhere else. `find_at` keeps the
/// bytes before `start` as context, so `\b` and `^` see what the engine sees.
fn matches_at_a_char_boundary(reference: &regex::bytes::Regex, value: &str) -> bool {
    (0..=value.len())
        .filter(|&i| value.is_char_boundary(i))
        .any(|i| reference.find_at(value.as_bytes(), i).map(|m| m.start()) == Some(i))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Case-sensitive patterns with ASCII and non-ASCII literals, classes and ranges, on values
    /// mixing both.
    #[test]
    fn agrees_with_the_regex_crate(
        gen in generated(true, false),
        dot_all in any::<bool>(),
        values in proptest::collection::vec(haystack(true), 1..8),
    ) {
        check_case(&gen, if dot_all { "(?s)" } else { "" }, &values)?;
    }

    /// Case-insensitive patterns (`(?i)` at the start or on groups): the `regex` crate folds
    /// Unicode (`k` matches U+212A KELVIN SIGN), this engine ASCII only, so the values are ASCII.
    #[test]
    fn agrees_with_the_regex_crate_case_insensitively(
        gen in generated(false, true),
        at_start in any::<bool>(),
        values in proptest::collection::vec(haystack(false), 1..8),
    ) {
        check_case(&gen, if at_start { "(?i)" } else { "" }, &values)?;
    }
}

/// Found by `agrees_with_the_regex_crate` against the str flavour of the reference.
#[test]
fn ascii_non_boundary_or_non_digit_matches_a_non_ascii_value() {
    let ours = Pattern::new(r"\B|\D").unwrap();
    let reference = regex::bytes::Regex::new(r"(?-u:\B)|[^0-9]").unwrap();
    assert!(ours.is_match("9é0"));
    assert!(reference.is_match("9é0".as_bytes()));
}

/// Found by `agrees_with_the_regex_crate` against the bytes flavour of the reference: its only
/// match is an empty `\B` between the two bytes of "é", which is no position of a character.
#[test]
fn ascii_non_boundary_holds_at_no_position_inside_a_character() {
    let ours = Pattern::new(r"\B|c|aa").unwrap();
    let reference = regex::bytes::Regex::new(r"(?-u:\B)|c|aa").unwrap();
    assert!(!ours.is_match("Aéa"));
    assert!(reference.is_match("Aéa".as_bytes()));
    assert!(!matches_at_a_char_boundary(&reference, "Aéa"));
    // Where a character boundary does hold the match, the helper finds it.
    assert!(matches_at_a_char_boundary(&reference, "Aaa"));
    assert!(matches_at_a_char_boundary(&reference, "éc"));
}

fn encoded(program: &Program) -> Vec<u8> {
    let mut out = Vec::new();
    program.encode(&mut out);
    out
}

fn decode_error(bytes: &[u8]) -> String {
    match Program::decode(bytes) {
        Ok(p) => panic!("{bytes:?} decoded to {p:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_round_tripped_program_matches_exactly_like_its_pattern() {
    for &(pattern, value, expected) in MATCH_CASES {
        let source = Pattern::new(pattern).unwrap();
        let bytes = encoded(source.program());
        let decoded = Program::decode(&bytes).unwrap_or_else(|e| panic!("`{pattern}`: {e}"));
        assert_eq!(&decoded, source.program(), "`{pattern}`");
        let run = Pattern::from_program(decoded);
        assert_eq!(run, source, "`{pattern}`");
        assert_eq!(run.is_match(value), expected, "`{pattern}` on {value:?}");
    }
}

#[test]
fn every_instruction_kind_round_trips() {
    let program = Program {
        insts: alloc::vec![
            Inst::Split(1, 9),
            Inst::Char('é'),
            Inst::Class(alloc::vec![
                ('0', '9'),
                ('a', 'z'),
                ('\u{1F600}', '\u{10FFFF}')
            ]),
            Inst::Class(Vec::new()),
            Inst::Any { newline: false },
            Inst::Any { newline: true },
            Inst::Look(Look::Start),
            Inst::Look(Look::End),
            Inst::Look(Look::WordBoundary),
            Inst::Look(Look::NotWordBoundary),
            Inst::Jmp(11),
            Inst::Match,
        ],
        anchored: true,
    };
    let bytes = encoded(&program);
    assert_eq!(Program::decode(&bytes), Ok(program.clone()));
    let unanchored = Program {
        anchored: false,
        ..program
    };
    assert_eq!(Program::decode(&encoded(&unanchored)), Ok(unanchored));
}

#[test]
fn hostile_programs_are_refused_naming_what() {
    let many = {
        let mut b = alloc::vec![0u8];
        crate::varint::put(&mut b, (MAX_INSTRUCTIONS + 1) as u64);
        b.extend(core::iter::repeat_n(MATCH_TAG, MAX_INSTRUCTIONS + 1));
        b
    };
    let cases: &[(&[u8], &str)] = &[
        (&[], "pattern program at byte 0: the bytes end early"),
        (&[2, 1, 7], "pattern program at byte 0: flags other than 0 or 1"),
        (&[0, 0], "pattern program at byte 1: a program without instructions"),
        (&many, "pattern program at byte 1: more instructions than the limit of 2000"),
        // Split to 5 in a program of 2.
        (&[0, 2, 5, 1, 5, 7], "pattern program at byte 4: a jump target past the end of the program"),
        (&[0, 2, 6, 2, 7], "pattern program at byte 3: a jump target past the end of the program"),
        // A surrogate (0xD800) is no char.
        (&[0, 2, 0, 0x80, 0xb0, 0x03, 7], "pattern program at byte 3: a character that is not a Unicode scalar value"),
        // Above char::MAX.
        (&[0, 2, 0, 0x80, 0x80, 0x44, 7], "pattern program at byte 3: a character that is not a Unicode scalar value"),
        (&[0, 2, 1, 1, b'z', b'a', 7], "pattern program at byte 4: a class range whose end is below its start"),
        (&[0, 2, 1, 2, b'a', b'm', b'k', b'z', 7], "pattern program at byte 6: a class range that does not come after the range before it"),
        (&[0, 2, 1, 9, b'a', b'b', 7], "pattern program at byte 3: a count larger than the bytes left"),
        (&[0, 2, 4, 4, 7], "pattern program at byte 3: an assertion other than ^, $, \\b or \\B"),
        (&[0, 1, 8], "pattern program at byte 2: an instruction kind other than 0 to 7"),
        // Truncated in the middle of the instructions.
        (&[0, 3, 0, b'a', 0], "pattern program at byte 5: the bytes end early"),
        (&[0, 2, 0, 0xff], "pattern program at byte 4: the bytes end early"),
        (&[0, 2, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 7], "pattern program at byte 3: a number longer than 64 bits"),
        (&[0, 1, 0, b'a'], "pattern program at byte 4: a last instruction other than `match` (a step could leave the program)"),
        (&[0, 1, 7, 7], "pattern program at byte 3: bytes after the last instruction"),
    ];
    for (bytes, message) in cases {
        assert_eq!(&decode_error(bytes), message, "{bytes:?}");
    }
    assert_eq!(MAX_INSTRUCTIONS, 2000, "the message above names the limit");
}

const MATCH_TAG: u8 = 7;

proptest! {
    /// Any bytes: decode never panics, and what it accepts runs within the bound.
    #[test]
    fn arbitrary_bytes_decode_totally(bytes in proptest::collection::vec(any::<u8>(), 0..64), value in "\\PC{0,32}") {
        if let Ok(program) = Program::decode(&bytes) {
            let len = program.len() as u64;
            let pattern = Pattern::from_program(program);
            let mut steps = 0;
            pattern.search(&value, &mut steps);
            let chars = value.chars().count() as u64;
            prop_assert!(steps <= (2 * len + 1) * (chars + 2), "{steps} steps");
        }
    }
}
