//! Text built without `core::fmt`: the Wasm filter's messages (a refused plugin configuration,
//! its log lines, its metric names) are pushed together from `&str`s and these helpers, so the
//! module links none of the formatting machinery for them (issue 31: every kilobyte of the
//! module costs every sidecar start-up time and memory).

use alloc::string::String;

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        // `at` counts down from 20 and a u64 has at most 20 digits.
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (rest % 10) as u8;
        }
        rest /= 10;
        if rest == 0 || at == 0 {
            break;
        }
    }
    for d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(*d));
    }
}

/// `n` in decimal.
pub fn decimal(n: u64) -> String {
    let mut out = String::new();
    push_decimal(&mut out, n);
    out
}

/// `parts` one after the other, as one string.
pub fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn decimals_are_what_display_writes() {
        for n in [
            0,
            1,
            9,
            10,
            99,
            100,
            4_096,
            1_700_000_000_000,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = String::from("x=");
            push_decimal(&mut out, n);
            assert_eq!(out, ["x=", &n.to_string()].concat());
        }
    }

    #[test]
    fn concat_joins_without_separators() {
        assert_eq!(concat(&["boifi: ", "a", "", "b"]), "boifi: ab");
        assert_eq!(concat(&[]), "");
    }
}
