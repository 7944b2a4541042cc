//! The native dynamic module's configuration (Envoy's `filter_config`): the Wasm filter's
//! [`PluginConfig`] plus where the module's own poller thread reaches the control plane.
//! Read here, beside [`PluginConfig`], because two crates read it: the module (`boifi-dynamic`)
//! and the offline manifest checker (`boifi-deploy`), which must not link the module.

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;

use super::{PluginConfig, PluginConfigError};
use crate::json::Json;

/// The module's name in Envoy's configuration (`dynamic_module_config.name`): Envoy loads
/// `lib<name>.so` from `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
pub const NATIVE_MODULE_NAME: &str = "boifi";

/// Where the control plane listens when the configuration names nothing: its Service in a
/// Kubernetes cluster (the module connects itself, so no Envoy cluster is involved).
pub const DEFAULT_CONTROL_PLANE_ADDRESS: &str = "boifi-control-plane.boifi.svc.cluster.local:8080";

/// The fields that only the native module has.
const ADDRESS_FIELD: &str = "control_plane_address";
const TOKEN_FILE_FIELD: &str = "control_plane_token_file";

/// The native module's filter configuration (Envoy's `filter_config`, a JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// `host:port` of the control plane's plain-HTTP API.
    pub control_plane_address: String,
    /// The file holding the read credential sent on config requests (a mounted Secret's key):
    /// read before each request, so a rotated Secret is used without a restart. The module
    /// takes no inline `control_plane_token`: Envoy's `config_dump` would show it.
    pub control_plane_token_file: Option<String>,
    /// Everything the Wasm filter also reads; `control_plane_cluster` is not used by the module
    /// (it has no Envoy cluster), `control_plane_authority` is sent as `Host`;
    /// `control_plane_token` is refused (see [`NativeConfig::control_plane_token_file`]).
    pub plugin: PluginConfig,
}

/// Why the native module's configuration was refused (Envoy then rejects the listener).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NativeConfigError {
    /// Not JSON, or a field shared with the Wasm filter is wrong (named in the message).
    #[error("{0}")]
    Plugin(#[from] PluginConfigError),
    /// `control_plane_address` is wrong.
    #[error("filter configuration: control_plane_address: `{value}` {reason}")]
    Address {
        /// What the configuration says.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `control_plane_token_file` is not an absolute path.
    #[error(
        "filter configuration: control_plane_token_file: `{value}` is not an absolute file path"
    )]
    TokenFile {
        /// What the configuration says.
        value: String,
    },
    /// An inline credential, which the module refuses (its value is not shown).
    #[error("filter configuration: control_plane_token: the native module reads its credential from a file, which Envoy's config_dump does not show: mount it (a Secret) and set control_plane_token_file to its path")]
    InlineToken,
}

impl NativeConfig {
    /// Parses the configuration (once: the address is taken out of the parsed object before
    /// [`PluginConfig::from_value`] reads the rest, which refuses unknown fields, so a typo
    /// cannot pass silently); empty input gives the defaults.
    pub fn from_json(bytes: &[u8]) -> Result<NativeConfig, NativeConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NativeConfig {
                control_plane_address: DEFAULT_CONTROL_PLANE_ADDRESS.to_owned(),
                control_plane_token_file: None,
                plugin: PluginConfig::default(),
            });
        }
        let mut value = crate::json::parse(bytes).map_err(PluginConfigError::from)?;
        let mut address = DEFAULT_CONTROL_PLANE_ADDRESS.to_owned();
        let mut token_file = None;
        if let Json::Object(members) = &mut value {
            let (ours, rest): (Vec<_>, Vec<_>) = core::mem::take(members)
                .into_iter()
                .partition(|(key, _)| key == ADDRESS_FIELD || key == TOKEN_FILE_FIELD);
            *members = rest;
            if let Some(given) = Json::field(&ours, ADDRESS_FIELD) {
                address = check_address(given)?;
            }
            if let Some(given) = Json::field(&ours, TOKEN_FILE_FIELD) {
                token_file = Some(check_token_file(given)?);
            }
        }
        // Not an object: boifi-core's reader says what it is.
        let plugin = PluginConfig::from_value(&value)?;
        if plugin.control_plane_token.is_some() {
            return Err(NativeConfigError::InlineToken);
        }
        Ok(NativeConfig {
            control_plane_address: address,
            control_plane_token_file: token_file,
            plugin,
        })
    }
}

fn check_token_file(value: &Json) -> Result<String, NativeConfigError> {
    match value {
        Json::String(path) if path.starts_with('/') && !path.contains('\0') => Ok(path.clone()),
        Json::String(path) => Err(NativeConfigError::TokenFile {
            value: path.clone(),
        }),
        other => Err(NativeConfigError::TokenFile {
            value: other.type_name().to_owned(),
        }),
    }
}

fn check_address(value: &Json) -> Result<String, NativeConfigError> {
    let bad = |reason| NativeConfigError::Address {
        value: match value {
            Json::String(s) | Json::Number(s) => s.clone(),
            Json::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
            other => other.type_name().to_owned(),
        },
        reason,
    };
    let Json::String(text) = value else {
        return Err(bad("is not a string"));
    };
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("is not of the form host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(bad("has no host name before `:`"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(text.clone()),
        _ => Err(bad("has no port number (1-65535) after `:`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn empty_gives_defaults() {
        let c = NativeConfig::from_json(b"").unwrap();
        assert_eq!(c.control_plane_address, DEFAULT_CONTROL_PLANE_ADDRESS);
        assert_eq!(c.plugin, PluginConfig::default());
    }

    #[test]
    fn address_and_plugin_fields_are_read() {
        let c = NativeConfig::from_json(
            br#"{"control_plane_address":"127.0.0.1:9000","backoff_initial_ms":200}"#,
        )
        .unwrap();
        assert_eq!(c.control_plane_address, "127.0.0.1:9000");
        assert_eq!(c.plugin.backoff_initial_ms, 200);
        // As every other field: the last one wins, `null` is absent.
        let c = NativeConfig::from_json(
            br#"{"control_plane_address":"a:1","control_plane_address":"b:2"}"#,
        )
        .unwrap();
        assert_eq!(c.control_plane_address, "b:2");
        let c = NativeConfig::from_json(br#"{"control_plane_address":null}"#).unwrap();
        assert_eq!(c.control_plane_address, DEFAULT_CONTROL_PLANE_ADDRESS);
    }

    #[test]
    fn bad_fields_are_named() {
        let e = NativeConfig::from_json(br#"{"control_plane_address":"nohost"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter configuration: control_plane_address: `nohost` is not of the form host:port"
        );
        let e = NativeConfig::from_json(br#"{"control_plane_address":"h:99999"}"#).unwrap_err();
        assert!(e.to_string().contains("no port number"), "{e}");
        let e = NativeConfig::from_json(br#"{"control_plane_address":7}"#).unwrap_err();
        assert!(e.to_string().contains("`7` is not a string"), "{e}");
        let e = NativeConfig::from_json(br#"{"backoff_max_ms":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("backoff_max_ms"), "{e}");
        let e = NativeConfig::from_json(br#"{"control_plane_adress":"h:1"}"#).unwrap_err();
        assert!(e.to_string().contains("control_plane_adress"), "{e}");
        let e = NativeConfig::from_json(b"{").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
        let e = NativeConfig::from_json(b"[]").unwrap_err();
        assert!(e.to_string().contains("an object"), "{e}");
    }

    #[test]
    fn the_credential_comes_from_a_file_never_inline() {
        let c = NativeConfig::from_json(br#"{"control_plane_token_file":"/var/run/boifi/token"}"#)
            .unwrap();
        assert_eq!(
            c.control_plane_token_file.as_deref(),
            Some("/var/run/boifi/token")
        );
        assert_eq!(
            NativeConfig::from_json(b"{}")
                .unwrap()
                .control_plane_token_file,
            None
        );
        let e = NativeConfig::from_json(br#"{"control_plane_token":"s3cr3t"}"#).unwrap_err();
        assert_eq!(e, NativeConfigError::InlineToken);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        let e = NativeConfig::from_json(br#"{"control_plane_token_file":"token"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "filter configuration: control_plane_token_file: `token` is not an absolute file path"
        );
        let e = NativeConfig::from_json(br#"{"control_plane_token_file":3}"#).unwrap_err();
        assert!(e.to_string().contains("`a number`"), "{e}");
    }
}
