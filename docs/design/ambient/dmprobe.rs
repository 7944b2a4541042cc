// Probe dynamic module (ABI v0.2.0): logs attribute strings 0..=70, filter state and cluster
// metadata on request headers; with config "abort" it answers 503 instead.
#![allow(non_snake_case)]
use std::ffi::{c_char, c_void};
#[repr(C)] #[derive(Clone, Copy)] pub struct EB { ptr: *const u8, len: usize }
#[repr(C)] #[derive(Clone, Copy)] pub struct MB { ptr: *const u8, len: usize }
fn mb(b: &[u8]) -> MB { MB { ptr: b.as_ptr(), len: b.len() } }
extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, m: MB);
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(f: *mut c_void, id: u32, r: *mut EB) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(f: *mut c_void, id: u32, r: *mut u64) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_bytes(f: *mut c_void, key: MB, r: *mut EB) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_typed(f: *mut c_void, key: MB, r: *mut EB) -> bool;
    fn envoy_dynamic_module_callback_http_get_metadata_string(f: *mut c_void, src: u32, ns: MB, key: MB, r: *mut EB) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(f: *mut c_void, t: u32, k: MB, v: MB) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(f: *mut c_void, code: u32, h: *mut c_void, hn: usize, body: MB, details: MB);
}
fn log(s: &str) { unsafe { envoy_dynamic_module_callback_log(2, mb(s.as_bytes())) } }
fn eb(b: EB) -> String { if b.ptr.is_null() { return "<null>".into() } String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(b.ptr, b.len) }).into_owned() }
struct Cfg { abort: bool, statusrw: bool }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char { b"v0.2.0\0".as_ptr().cast() }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(_e: *mut c_void, _n: EB, c: EB) -> *const c_void {
    let c = eb(c); Box::into_raw(Box::new(Cfg { abort: c.contains("abort"), statusrw: c.contains("statusrw") })).cast() }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(_e: *mut c_void, _c: *const c_void, _i: u64) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(_c: *const c_void) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_new(c: *const c_void, _e: *mut c_void) -> *const c_void { c }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(f: *mut c_void, m: *const c_void, _eos: bool) -> u32 {
    let cfg = unsafe { &*(m as *const Cfg) };
    if cfg.statusrw { return 0; }
    if cfg.abort {
        log("DMABORT-CALL");
        unsafe { envoy_dynamic_module_callback_http_send_response(f, 503, std::ptr::null_mut(), 0, mb(b"dm abort\n"), mb(b"dm_abort")) };
        return 1;
    }
    for id in 0u32..=70 {
        let mut r = EB { ptr: std::ptr::null(), len: 0 };
        if unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_string(f, id, &mut r) } {
            log(&format!("DMPROBE attr {id} = {:?}", eb(r)));
        } else {
            let mut n = 0u64;
            if unsafe { envoy_dynamic_module_callback_http_filter_get_attribute_int(f, id, &mut n) } { log(&format!("DMPROBE attr {id} int = {n}")); }
        }
    }
    for key in ["io.istio.peer_principal", "io.istio.connect_authority", "plain.string"] {
        let mut r = EB { ptr: std::ptr::null(), len: 0 };
        let ok = unsafe { envoy_dynamic_module_callback_http_get_filter_state_bytes(f, mb(key.as_bytes()), &mut r) };
        log(&format!("DMPROBE filter_state_bytes {key} ok={ok} = {:?}", if ok { eb(r) } else { String::new() }));
        let mut r = EB { ptr: std::ptr::null(), len: 0 };
        let ok = unsafe { envoy_dynamic_module_callback_http_get_filter_state_typed(f, mb(key.as_bytes()), &mut r) };
        log(&format!("DMPROBE filter_state_typed {key} ok={ok} = {:?}", if ok { eb(r) } else { String::new() }));
    }
    for (src, ns, key) in [(2u32, "istio", "services"), (2, "boifi", "service"), (1, "boifi", "service")] {
        let mut r = EB { ptr: std::ptr::null(), len: 0 };
        let ok = unsafe { envoy_dynamic_module_callback_http_get_metadata_string(f, src, mb(ns.as_bytes()), mb(key.as_bytes()), &mut r) };
        log(&format!("DMPROBE metadata src={src} {ns}.{key} ok={ok} = {:?}", if ok { eb(r) } else { String::new() }));
    }
    0
}
macro_rules! noop3 { ($($n:ident),*) => { $( #[no_mangle] pub extern "C" fn $n(_f: *mut c_void, _m: *const c_void, _e: bool) -> u32 { 0 } )* } }
noop3!(envoy_dynamic_module_on_http_filter_request_body, envoy_dynamic_module_on_http_filter_response_body);
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(f: *mut c_void, m: *const c_void, _e: bool) -> u32 {
    let cfg = unsafe { &*(m as *const Cfg) };
    if cfg.statusrw {
        let ok = unsafe { envoy_dynamic_module_callback_http_set_header(f, 2, mb(b":status"), mb(b"503")) };
        log(&format!("DMSTATUSRW ok={ok}"));
    }
    0
}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(_f: *mut c_void, _m: *const c_void) -> u32 { 0 }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(_f: *mut c_void, _m: *const c_void) -> u32 { 0 }
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(_f: *mut c_void, _m: *const c_void) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(_m: *const c_void) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(_f: *mut c_void, _m: *const c_void, _i: u64) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(_f: *mut c_void, _m: *const c_void, _i: u64, _r: u32, _h: *const c_void, _hn: usize, _b: *const c_void, _bn: usize) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(_f: *mut c_void, _m: *const c_void, _s: u64, _h: *const c_void, _hn: usize, _e: bool) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(_f: *mut c_void, _m: *const c_void, _s: u64, _h: *const c_void, _hn: usize, _e: bool) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(_f: *mut c_void, _m: *const c_void, _s: u64, _h: *const c_void, _hn: usize) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(_f: *mut c_void, _m: *const c_void, _s: u64) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(_f: *mut c_void, _m: *const c_void, _s: u64, _r: u32) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(_f: *mut c_void, _m: *const c_void) {}
#[no_mangle] pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(_f: *mut c_void, _m: *const c_void) {}
