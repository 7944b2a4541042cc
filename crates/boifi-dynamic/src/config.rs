//! The module's configuration: the Wasm filter's plugin configuration (`PluginConfig`, parsed by
//! boifi-core) plus where the module's own poller thread reaches the control plane.

use boifi_core::wire::{PluginConfig, PluginConfigError};
use serde_json::Value;

/// Where the control plane listens when the configuration names nothing: its Service in a
/// Kubernetes cluster (the module connects itself, so no Envoy cluster is involved).
pub const DEFAULT_CONTROL_PLANE_ADDRESS: &str = "boifi-control-plane.boifi.svc.cluster.local:8080";

/// The field that only the native module has.
const ADDRESS_FIELD: &str = "control_plane_address";

/// The filter configuration (Envoy's `filter_config`, a JSON object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// `host:port` of the control plane's plain-HTTP API.
    pub control_plane_address: String,
    /// Everything the Wasm filter also reads; `control_plane_cluster` is not used here (the
    /// module has no Envoy cluster), `control_plane_authority` is sent as `Host`.
    pub plugin: PluginConfig,
}

/// Why the filter configuration was refused (Envoy then rejects the listener).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field shared with the Wasm filter is wrong (boifi-core names it).
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
}

impl NativeConfig {
    /// Parses the configuration; empty input gives the defaults.
    pub fn from_json(bytes: &[u8]) -> Result<NativeConfig, ConfigError> {
        let mut address = DEFAULT_CONTROL_PLANE_ADDRESS.to_owned();
        // The address is taken out before boifi-core reads the rest, which refuses unknown
        // fields (a typo must not pass silently).
        let rest = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(mut map)) => {
                if let Some(value) = map.remove(ADDRESS_FIELD) {
                    address = check_address(&value)?;
                }
                Value::Object(map).to_string().into_bytes()
            }
            // Not an object (or not JSON): boifi-core reports it with line and column.
            _ => bytes.to_vec(),
        };
        Ok(NativeConfig {
            control_plane_address: address,
            plugin: PluginConfig::from_json(&rest)?,
        })
    }
}

fn check_address(value: &Value) -> Result<String, ConfigError> {
    let bad = |reason| ConfigError::Address {
        value: value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned),
        reason,
    };
    let text = value.as_str().ok_or_else(|| bad("is not a string"))?;
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| bad("is not of the form host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(bad("has no host name before `:`"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(text.to_owned()),
        _ => Err(bad("has no port number (1-65535) after `:`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = NativeConfig::from_json(b"{").unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }
}
