//! The e2e scenarios this crate's tests share with boifi-wasm (compiled from its files) leave
//! out the Wasm-only ones under this cfg.
fn main() {
    println!("cargo::rustc-cfg=boifi_native_e2e");
}
