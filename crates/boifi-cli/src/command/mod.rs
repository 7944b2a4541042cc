//! One module per verb.

pub mod completion;
pub mod halt;
pub mod policy;
pub mod simulate;
pub mod status;
pub mod validate;

/// Percent-encodes one URL path segment (a policy name typed by the user).
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
