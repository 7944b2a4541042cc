//! One module per verb.

pub mod completion;
pub mod halt;
pub mod policy;
pub mod simulate;
pub mod status;
pub mod validate;

/// Percent-encodes one URL path segment (a policy name typed by the user).
pub(crate) fn encode_segment(value: &str) -> String {
    boifi_core::wire::percent_encode(value)
}
