//! The module's configuration: the Wasm filter's plugin configuration plus where the module's
//! own poller thread reaches the control plane. Its reader is boifi-core's
//! ([`boifi_core::wire::NativeConfig`]), beside the Wasm filter's, so the offline manifest
//! checker (boifi-deploy) reads it without linking this module.

pub use boifi_core::wire::NativeConfig;
