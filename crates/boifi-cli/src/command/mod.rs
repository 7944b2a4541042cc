//! One module per verb.

pub mod audit;
pub mod completion;
pub mod halt;
pub mod policy;
pub mod simulate;
pub mod status;
pub mod validate;

/// The API path of the policy `name` typed by the user, checked by the core's name rule first
/// (so `status` never reaches `/v1/policies/status`) and percent-encoded.
pub(crate) fn policy_path(name: &str) -> Result<String, crate::error::CliError> {
    boifi_core::policy::check_name(name)
        .map_err(|kind| crate::error::CliError::Usage(format!("policy name: {kind}")))?;
    Ok(format!(
        "/v1/policies/{}",
        boifi_core::wire::percent_encode(name)
    ))
}
