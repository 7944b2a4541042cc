//! Our own thin layer over the proxy-wasm ABI (0.2.1): the host functions boifi calls, as a
//! safe [`Host`], and only the callbacks boifi needs as exports. Envoy skips a callback a
//! module does not export, so a request costs three calls into the VM (context create, request
//! headers, delete) instead of the SDK's eleven, and no context object is allocated for it.
//!
//! The only `unsafe` of the filter lives here: FFI declarations, reading the host's answers,
//! and the allocator the host calls to hand data over.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ptr::null_mut;

use crate::filter::{Action, Filter};
use crate::host::{Host, HttpCall, Level, MetricKind};
use crate::props::encode_pairs;

/// ABI status codes (`WasmResult`).
const OK: u32 = 0;
/// `BufferType::PluginConfiguration`.
const PLUGIN_CONFIGURATION: u32 = 7;
/// `BufferType::HttpCallResponseBody`.
const HTTP_CALL_RESPONSE_BODY: u32 = 4;
/// `MapType::HttpRequestHeaders`.
const HTTP_REQUEST_HEADERS: u32 = 0;
/// `MapType::HttpCallResponseHeaders`.
const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;
/// `StreamType::HttpRequest`.
const STREAM_HTTP_REQUEST: u32 = 0;
/// `StreamType::HttpResponse`.
const STREAM_HTTP_RESPONSE: u32 = 1;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message: *const u8, size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        kind: u32,
        start: usize,
        max: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(kind: u32, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        kind: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key: *const u8,
        key_size: usize,
        data: *mut *mut u8,
        size: *mut usize,
        cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_http_call(
        upstream: *const u8,
        upstream_size: usize,
        headers: *const u8,
        headers_size: usize,
        body: *const u8,
        body_size: usize,
        trailers: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        token: *mut u32,
    ) -> u32;
    fn proxy_send_local_response(
        status: u32,
        details: *const u8,
        details_size: usize,
        body: *const u8,
        body_size: usize,
        headers: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(kind: u32) -> u32;
    fn proxy_close_stream(kind: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, by: i64) -> u32;
    fn proxy_record_metric(id: u32, value: u64) -> u32;
}

/// Takes ownership of what the host handed over through a `(data, size)` out-pair.
///
/// # Safety
/// `data` is null or was returned by [`proxy_on_memory_allocate`] for exactly `size` bytes,
/// which the host filled and no longer uses (the ABI's contract for every returned buffer),
/// and it is taken once.
unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: see the function's contract: a `Box<[u8]>` of `size` bytes, leaked by the
    // allocator below, has the layout of a `Vec<u8>` with length and capacity `size`.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Calls a host function that returns a buffer through `(data, size)` out-pointers.
fn returned(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Option<Vec<u8>> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let status = call(&mut data, &mut size);
    // SAFETY: the host wrote `data` and `size` (or left null/0) as the ABI specifies; a
    // buffer it allocated is ours even when the status is not OK, so it is freed either way.
    let buffer = unsafe { owned(data, size) };
    (status == OK).then_some(buffer).flatten()
}

/// The proxy-wasm host Envoy provides.
#[derive(Debug, Clone, Copy, Default)]
pub struct AbiHost;

impl Host for AbiHost {
    fn now_nanos(&self) -> u64 {
        let mut t = 0u64;
        // SAFETY: the host writes one u64 through a valid pointer.
        match unsafe { proxy_get_current_time_nanoseconds(&mut t) } {
            OK => t,
            _ => 0,
        }
    }

    fn log(&self, level: Level, message: &str) {
        // SAFETY: pointer and length of a live string the host only reads.
        unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
    }

    fn set_tick_period_ms(&self, ms: u32) -> bool {
        // SAFETY: no pointers.
        unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
    }

    fn plugin_configuration(&self) -> Option<Vec<u8>> {
        returned(|data, size| {
            // SAFETY: valid out-pointers; the host allocates through our allocator.
            unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, data, size) }
        })
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        // Segments joined by NUL, as the ABI specifies (pushed, not `join`ed: `join` links a
        // generic copy loop for this one use).
        let mut joined = Vec::new();
        for (i, segment) in path.iter().enumerate() {
            if i > 0 {
                joined.push(0);
            }
            joined.extend_from_slice(segment.as_bytes());
        }
        returned(|data, size| {
            // SAFETY: a live byte string the host only reads; valid out-pointers.
            unsafe { proxy_get_property(joined.as_ptr(), joined.len(), data, size) }
        })
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let mut cas = 0u32;
        let value = returned(|data, size| {
            // SAFETY: a live key the host only reads; valid out-pointers.
            unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), data, size, &mut cas) }
        });
        (value, (cas != 0).then_some(cas))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        // SAFETY: live key and value the host only reads.
        unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            ) == OK
        }
    }

    fn request_headers(&self) -> Option<Vec<u8>> {
        returned(|data, size| {
            // SAFETY: valid out-pointers; the host allocates through our allocator.
            unsafe { proxy_get_header_map_pairs(HTTP_REQUEST_HEADERS, data, size) }
        })
    }

    fn replace_request_header(&self, name: &str, value: &[u8]) -> bool {
        // SAFETY: both buffers are valid for their lengths during the call, which only reads them.
        unsafe {
            proxy_replace_header_map_value(
                HTTP_REQUEST_HEADERS,
                name.as_ptr(),
                name.len(),
                value.as_ptr(),
                value.len(),
            ) == OK
        }
    }

    fn call_response_header(&self, name: &str) -> Option<Vec<u8>> {
        returned(|data, size| {
            // SAFETY: a live name the host only reads; valid out-pointers.
            unsafe {
                proxy_get_header_map_value(
                    HTTP_CALL_RESPONSE_HEADERS,
                    name.as_ptr(),
                    name.len(),
                    data,
                    size,
                )
            }
        })
    }

    fn call_response_body(&self, max: usize) -> Option<Vec<u8>> {
        returned(|data, size| {
            // SAFETY: valid out-pointers; the host allocates through our allocator.
            unsafe { proxy_get_buffer_bytes(HTTP_CALL_RESPONSE_BODY, 0, max, data, size) }
        })
    }

    fn http_call(&self, call: &HttpCall<'_>) -> Result<u32, u32> {
        let HttpCall {
            cluster,
            headers,
            timeout_ms,
        } = *call;
        let headers = encode_pairs(headers);
        // An empty pair map: a count of 0.
        let trailers = [0u8; 4];
        let mut token = 0u32;
        // SAFETY: live buffers the host only reads (an empty body as a null pointer and 0
        // length, which the ABI allows); a valid out-pointer for the token.
        let status = unsafe {
            proxy_http_call(
                cluster.as_ptr(),
                cluster.len(),
                headers.as_ptr(),
                headers.len(),
                core::ptr::null(),
                0,
                trailers.as_ptr(),
                trailers.len(),
                timeout_ms,
                &mut token,
            )
        };
        if status == OK {
            Ok(token)
        } else {
            Err(status)
        }
    }

    fn send_local_reply(&self, status: u32, headers: &[(&[u8], &[u8])], body: &[u8]) -> bool {
        let headers = encode_pairs(headers);
        // SAFETY: live buffers the host only reads; -1: no gRPC status of the host's own (a
        // gRPC abort carries `grpc-status` in its headers).
        unsafe {
            proxy_send_local_response(
                status,
                core::ptr::null(),
                0,
                body.as_ptr(),
                body.len(),
                headers.as_ptr(),
                headers.len(),
                -1,
            ) == OK
        }
    }

    fn resume_request(&self) -> bool {
        // SAFETY: no pointers.
        unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) == OK }
    }

    fn resume_response(&self) -> bool {
        // SAFETY: no pointers.
        unsafe { proxy_continue_stream(STREAM_HTTP_RESPONSE) == OK }
    }

    fn reset_stream(&self, response: bool) -> bool {
        let kind = if response {
            STREAM_HTTP_RESPONSE
        } else {
            STREAM_HTTP_REQUEST
        };
        // SAFETY: no pointers.
        unsafe { proxy_close_stream(kind) == OK }
    }

    fn set_effective_context(&self, context_id: u32) -> bool {
        // SAFETY: no pointers.
        unsafe { proxy_set_effective_context(context_id) == OK }
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut id = 0u32;
        // SAFETY: a live name the host only reads; a valid out-pointer.
        let status =
            unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
        (status == OK).then_some(id)
    }

    fn increment_metric(&self, id: u32, by: i64) {
        // SAFETY: no pointers.
        unsafe { proxy_increment_metric(id, by) };
    }

    fn record_metric(&self, id: u32, value: u64) {
        // SAFETY: no pointers.
        unsafe { proxy_record_metric(id, value) };
    }
}

thread_local! {
    // A Wasm VM is single-threaded: this is the VM's one filter.
    static FILTER: RefCell<Filter<AbiHost>> = const { RefCell::new(Filter::new(AbiHost)) };
}

/// Runs `f` on the filter; `fallback` when the host re-entered the VM from inside a host call
/// (the filter is busy): then doing nothing is always safe.
fn with_filter<T>(fallback: T, f: impl FnOnce(&mut Filter<AbiHost>) -> T) -> T {
    FILTER.with(|filter| match filter.try_borrow_mut() {
        Ok(mut filter) => f(&mut filter),
        Err(_) => fallback,
    })
}

/// The ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The allocator the host calls to hand data into the VM (exported as `malloc`, the name
/// Envoy looks for first). The buffer is freed by [`owned`] when the filter drops it.
#[cfg_attr(target_os = "unknown", export_name = "malloc")]
#[cfg_attr(not(target_os = "unknown"), no_mangle)]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

/// A root context (`parent` 0) or a stream was created.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, parent: u32) {
    with_filter((), |f| f.on_context_create(context_id, parent));
}

/// The VM started (nothing to do: configuration comes with `on_configure`).
#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_context_id: u32, _size: usize) -> bool {
    true
}

/// The plugin was (re)configured.
#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, _size: usize) -> bool {
    with_filter(true, |f| f.on_configure(context_id))
}

/// A root context's timer fired.
#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_filter((), |f| f.on_tick(context_id));
}

/// The request headers arrived: decide.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, _eos: bool) -> u32 {
    with_filter(Action::Continue, |f| f.on_request_headers(context_id)) as u32
}

/// An HTTP call (the config long-poll) was answered or failed.
/// Exported so a response-phase fault can act on the app's answer. Envoy then enters the VM on
/// every response; [`Filter::on_response_headers`] returns at once unless a response-phase rule
/// fired for some request of this VM (the dormant cost `boifi-bench dataplane` measures).
#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, _eos: bool) -> u32 {
    with_filter(Action::Continue, |f| f.on_response_headers(context_id)) as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    with_filter((), |f| {
        f.on_http_call_response(context_id, token, headers, body_size);
    });
}

/// A context is done (a root gives up the poller lease).
#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> bool {
    with_filter(true, |f| f.on_done(context_id))
}

/// A context is gone.
#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    with_filter((), |f| f.on_delete(context_id));
}
