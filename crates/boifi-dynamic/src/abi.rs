//! Envoy's dynamic-module C ABI: the only `unsafe` code of boifi.
//!
//! Declared by hand from `source/extensions/dynamic_modules/abi/abi.h` of Envoy 1.40 (ABI
//! `v0.2.0`; Envoy's Rust SDK is not published, and `v0.2.x` keeps the `v0.1.x` signatures
//! declared here). Only what boifi uses is declared; the `abi_header` test checks every
//! declaration, hook, struct and enum value here against the header vendored in
//! `testdata/envoy-abi/` (its source and what may differ from 1.40.0 are in its README).
//! Everything above this module is safe Rust: the exported event hooks below turn Envoy's
//! pointers into references to boifi's own objects and call [`crate::filter`]; the callbacks
//! Envoy implements are wrapped in safe methods of [`Stream`], [`ConfigHandle`] and
//! [`Scheduler`].
//!
//! Ownership, as the ABI defines it: `*_envoy_ptr` and `envoy_buffer` belong to Envoy and are
//! valid for the duration of the hook that hands them over; `*_module_ptr` belong to boifi
//! (a leaked `Box`, reclaimed in the matching `destroy` hook). A scheduler is allocated by
//! Envoy but owned by the module, which must delete it.
//!
//! No hook can unwind into Envoy: the code they call is panic-free by the workspace lints, and
//! an `extern "C"` function that panicked would abort rather than unwind.
//!
//! Re-entrancy. Two callbacks can call back into the module before they return:
//! `send_response` (Envoy's `sendLocalReply` runs the response path at once: the response hooks,
//! and when the request was complete, `stream_complete` of this very filter, and maybe its
//! `destroy`) and `continue_decoding` (the request goes on to the next filters, and one of them,
//! e.g. a router with a direct response, may answer it and end the stream the same way). Envoy
//! 1.40 calls `stream_complete` inside both (from the scheduled hook; the `reentrancy` e2e test
//! sees it) and `destroy` after the hook returns, but nothing here relies on the latter. Every
//! other callback used here only reads or records (headers, attributes, metrics, the log, a new
//! scheduler) or posts to a dispatcher for later (scheduler commits). So:
//! - only this module can make those two calls ([`Stream`] keeps them private), through
//!   [`perform`], and a [`StreamFilter`] asks for them by returning a [`HostCall`];
//! - a hook ends its `&mut StreamFilter` before [`perform`], and touches neither the filter nor
//!   anything read from the stream after it: the filter may be freed by then;
//! - `stream_complete` and `destroy` of a stream the filter no longer holds do nothing but
//!   forget and free, so they are right whenever they come.

use core::ffi::{c_char, c_void};
use core::marker::PhantomData;
use core::ptr::NonNull;

use std::cell::Cell;

use crate::filter::{FilterConfig, Headers, HostCall, StreamFilter};

/// The ABI version this module was written against (Envoy 1.40 reports `v0.2.0`; on a
/// mismatch Envoy only warns).
const ABI_VERSION: &[u8] = b"v0.2.0\0";

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct EnvoyBuffer {
    ptr: *const u8,
    length: usize,
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ModuleBuffer {
    ptr: *const u8,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct ModuleHttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct EnvoyHttpHeader {
    key_ptr: *const u8,
    key_length: usize,
    value_ptr: *const u8,
    value_length: usize,
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader`.
const REQUEST_HEADER: u32 = 0;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_SUCCESS: u32 = 0;
/// `envoy_dynamic_module_type_attribute_id_ConnectionUriSanPeerCertificate`: the 38th entry of
/// the enum (`RequestPath` = 0 … `ConnectionUriSanLocalCertificate` = 36), counted in Envoy's
/// header by the `abi_header` test (`testdata/envoy-abi/`); the e2e caller scenarios prove it in
/// Envoy 1.40 (36: our own certificate's URI SAN, 35: the peer's DNS SAN, which the mesh
/// certificates lack, would make them fail).
const ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE: u32 = 37;
/// `envoy_dynamic_module_type_attribute_id_XdsClusterName` (`xds.cluster_name`): a gateway's
/// routed cluster, `outbound|<port>|<subset>|<fqdn>` (read in Envoy 1.40 by the probe of
/// `docs/design/ambient.md` §1).
const ATTRIBUTE_XDS_CLUSTER_NAME: u32 = 57;
/// `envoy_dynamic_module_type_attribute_id_XdsFilterChainName` (`xds.filter_chain_name`): a
/// waypoint's chain, `inbound-vip|<port>|<protocol>|<fqdn>` (same probe).
const ATTRIBUTE_XDS_FILTER_CHAIN_NAME: u32 = 66;

// Hook return values (`FilterHeadersStatus`, `FilterDataStatus`, `FilterTrailersStatus`).
const HEADERS_CONTINUE: u32 = 0;
const HEADERS_STOP_ITERATION: u32 = 1;
const BODY_CONTINUE: u32 = 0;
const BODY_STOP_ITERATION_AND_BUFFER: u32 = 1;
const TRAILERS_CONTINUE: u32 = 0;
const TRAILERS_STOP_ITERATION: u32 = 1;

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
}

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    fn envoy_dynamic_module_callback_http_get_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: *mut c_void,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter_envoy_ptr: *mut c_void,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: *mut c_void,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter_envoy_ptr: *mut c_void,
        status_code: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter_envoy_ptr: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter_envoy_ptr: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);

    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        filter_config_envoy_ptr: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        filter_config_envoy_ptr: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_set_gauge(
        filter_config_envoy_ptr: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_gauge(
        filter_config_envoy_ptr: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        gauge_id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_set_gauge(
        filter_envoy_ptr: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// Writes one line to Envoy's log (component `dynamic_modules`); callable from any thread
/// (Envoy's logger is thread-safe).
pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the ABI only reads `message` during the call; the buffer is a live `&str`.
    unsafe { envoy_dynamic_module_callback_log(level as u32, ModuleBuffer::of(message.as_bytes())) }
}

/// True when Envoy would print a line at `level` (so messages are only formatted when shown).
pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: a pure query of Envoy's logger; no pointers involved.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

/// The filter configuration's Envoy side, valid during the config hook that received it
/// (`on_http_filter_config_new`, where alone metrics can be defined: Envoy freezes stat creation
/// right after, or `on_http_filter_config_scheduled`, on the main thread).
#[derive(Debug)]
pub struct ConfigHandle<'a> {
    ptr: NonNull<c_void>,
    _hook: PhantomData<&'a ()>,
}

/// A counter defined on a filter configuration (with no label, or with one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterId(usize);

/// A gauge defined on a filter configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeId(usize);

impl ConfigHandle<'_> {
    /// Defines counter `name` (Envoy puts it under the filter's `metrics_namespace`); `None`
    /// when Envoy refuses.
    pub fn define_counter(&self, name: &str) -> Option<CounterId> {
        self.define(name, &[], false).map(CounterId)
    }

    /// Defines counter `name` with one label, `label`.
    pub fn define_labeled_counter(&self, name: &str, label: &str) -> Option<CounterId> {
        self.define(name, &[ModuleBuffer::of(label.as_bytes())], false)
            .map(CounterId)
    }

    /// Defines gauge `name`.
    pub fn define_gauge(&self, name: &str) -> Option<GaugeId> {
        self.define(name, &[], true).map(GaugeId)
    }

    /// A handle that posts events to this configuration on Envoy's main thread, from any thread.
    pub fn scheduler(&self) -> Option<ConfigScheduler> {
        // SAFETY: `ptr` is the live config of the running hook; the scheduler is owned by the
        // module from now on (deleted by `ConfigScheduler::drop`).
        let raw = unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.ptr.as_ptr())
        };
        NonNull::new(raw).map(ConfigScheduler)
    }

    /// Adds `by` to an unlabeled counter of this configuration.
    pub fn increment(&self, counter: Option<CounterId>, by: u64) {
        self.metrics().increment(counter, &mut [], by);
    }

    /// Sets a gauge of this configuration.
    pub fn set_gauge(&self, gauge: Option<GaugeId>, value: u64) {
        self.metrics().set_gauge(gauge, value);
    }

    fn metrics(&self) -> Metrics<'_> {
        Metrics {
            ptr: self.ptr,
            increment: envoy_dynamic_module_callback_http_filter_config_increment_counter,
            set_gauge: envoy_dynamic_module_callback_http_filter_config_set_gauge,
            _hook: PhantomData,
        }
    }

    fn define(&self, name: &str, labels: &[ModuleBuffer], gauge: bool) -> Option<usize> {
        let mut id = 0usize;
        let mut labels = labels.to_vec();
        let (labels_ptr, labels_len) = if labels.is_empty() {
            (core::ptr::null_mut(), 0)
        } else {
            (labels.as_mut_ptr(), labels.len())
        };
        let define = if gauge {
            envoy_dynamic_module_callback_http_filter_config_define_gauge
        } else {
            envoy_dynamic_module_callback_http_filter_config_define_counter
        };
        // SAFETY: `ptr` is the live `filter_config_envoy_ptr` of the running config hook
        // (lifetime `'a`); Envoy copies `name` and the label names during the call (null, 0 is
        // allowed for no labels); `id` is a valid out-pointer.
        let result = unsafe {
            define(
                self.ptr.as_ptr(),
                ModuleBuffer::of(name.as_bytes()),
                labels_ptr,
                labels_len,
                &mut id,
            )
        };
        (result == METRICS_SUCCESS).then_some(id)
    }
}

/// One HTTP stream's Envoy side (`filter_envoy_ptr`), valid for the duration of the hook that
/// received it (lifetime `'a`): values read from it borrow Envoy's header map for that long.
#[derive(Debug, Clone, Copy)]
pub struct Stream<'a> {
    ptr: NonNull<c_void>,
    _hook: PhantomData<&'a ()>,
}

/// The shape of the ABI's metric updates (increment a counter, set a gauge), on a filter or
/// on a filter configuration.
type MetricUpdate = unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;

/// The metrics of one live Envoy object within the running hook (lifetime `'a`): a stream's
/// filter or a filter configuration, with the ABI's two updates for that kind of object. Made
/// only by [`Stream::metrics`] and [`ConfigHandle::metrics`], which pair each pointer with the
/// updates that take it.
struct Metrics<'a> {
    ptr: NonNull<c_void>,
    increment: MetricUpdate,
    set_gauge: MetricUpdate,
    _hook: PhantomData<&'a ()>,
}

impl Metrics<'_> {
    /// Adds `by` (if any) to `counter` for the label values `labels` (as many as it was
    /// defined with: none, or one).
    fn increment(&self, counter: Option<CounterId>, labels: &mut [ModuleBuffer], by: u64) {
        if let (Some(CounterId(id)), true) = (counter, by > 0) {
            self.update(self.increment, id, labels, by);
        }
    }

    fn set_gauge(&self, gauge: Option<GaugeId>, value: u64) {
        if let Some(GaugeId(id)) = gauge {
            self.update(self.set_gauge, id, &mut [], value);
        }
    }

    /// Calls one metric update with `labels` (none: null, 0, as the ABI allows). The result is
    /// ignored: a metric Envoy does not know is not worth failing a request for.
    fn update(&self, update: MetricUpdate, id: usize, labels: &mut [ModuleBuffer], value: u64) {
        let (labels_ptr, labels_len) = if labels.is_empty() {
            (core::ptr::null_mut(), 0)
        } else {
            (labels.as_mut_ptr(), labels.len())
        };
        // SAFETY: `ptr` is the live object of the running hook (`'a`) of the kind `update` takes
        // (see `Metrics`). Envoy looks `id` up in that configuration's own tables and answers
        // `MetricNotFound`/`InvalidLabels` for an id or label count it does not know, so no id
        // can make it read out of bounds; it reads `labels` during the call, and they outlive it.
        unsafe { update(self.ptr.as_ptr(), id, labels_ptr, labels_len, value) };
    }
}

/// A response header of a local reply.
type Header<'h> = (&'h str, &'h [u8]);

impl<'a> Stream<'a> {
    /// The first value of request header `name` (lower-case), as Envoy's bytes.
    pub fn request_header(&self, name: &str) -> Option<&'a [u8]> {
        let mut result = EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        };
        // SAFETY: `ptr` is the live filter of the running hook; the key is read during the call;
        // `result` is a valid out-pointer; `optional_size` may be null per the ABI.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.ptr.as_ptr(),
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                &mut result,
                0,
                core::ptr::null_mut(),
            )
        };
        // SAFETY: on `found`, Envoy pointed `result` into the request header map, valid until the
        // running hook returns (`'a`) unless a header is set, which only the request-headers hook
        // does, after the filter's reads.
        unsafe { found_bytes(found, result) }
    }

    /// The first URI SAN of the downstream peer's certificate (the caller's SPIFFE id in a mesh);
    /// `None` over plaintext, without a client certificate, or when it has no URI SAN.
    pub fn peer_uri_san(&self) -> Option<&'a [u8]> {
        self.attribute_string(ATTRIBUTE_CONNECTION_URI_SAN_PEER_CERTIFICATE)
    }

    /// The name of the filter chain the request arrived on (`xds.filter_chain_name`).
    pub fn filter_chain_name(&self) -> Option<&'a [u8]> {
        self.attribute_string(ATTRIBUTE_XDS_FILTER_CHAIN_NAME)
    }

    /// The name of the cluster the request is routed to (`xds.cluster_name`); `None` when no
    /// route matched.
    pub fn cluster_name(&self) -> Option<&'a [u8]> {
        self.attribute_string(ATTRIBUTE_XDS_CLUSTER_NAME)
    }

    /// A filter-state object that is a string (`Router::StringAccessor`; Istio's
    /// `istio.hashable_string` and Envoy's `envoy.string` / `envoy.hashable_string` are), as
    /// bytes; `None` when absent or of another type.
    pub fn filter_state_bytes(&self, key: &str) -> Option<&'a [u8]> {
        let mut result = EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        };
        // SAFETY: `ptr` is the live filter of the running hook; the key is read during the call;
        // `result` is a valid out-pointer that Envoy fills only when it returns true.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.ptr.as_ptr(),
                ModuleBuffer::of(key.as_bytes()),
                &mut result,
            )
        };
        // SAFETY: on `found`, Envoy pointed `result` into the stream's filter state, valid until
        // the running hook returns (`'a`) unless a setter is called (the module sets no filter
        // state).
        unsafe { found_bytes(found, result) }
    }

    /// Sets request header `name` to `value`, replacing its values. It does not re-enter the
    /// module, but it frees the buffers Envoy handed out for that header: only the request
    /// headers hook calls it, after the filter's borrow of the request ended.
    fn set_request_header(&self, name: &str, value: &[u8]) -> bool {
        // SAFETY: `ptr` is the live filter of the running hook; key and value are read during the
        // call and outlive it.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.ptr.as_ptr(),
                REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// A string attribute of the stream (`envoy_dynamic_module_type_attribute_id`).
    fn attribute_string(&self, attribute_id: u32) -> Option<&'a [u8]> {
        let mut result = EnvoyBuffer {
            ptr: core::ptr::null(),
            length: 0,
        };
        // SAFETY: `ptr` is the live filter of the running hook; `result` is a valid out-pointer
        // that Envoy fills only when it returns true (it returns false when the stream has no
        // connection, the connection no TLS, or the certificate no URI SAN).
        let found = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.ptr.as_ptr(),
                attribute_id,
                &mut result,
            )
        };
        // SAFETY: on `found`, Envoy pointed `result` at a string it owns for at least the stream
        // (the connection's TLS info and its cached peer URI SANs; the filter chain's and the
        // routed cluster's configuration, which the stream holds), and the ABI keeps an
        // attribute's buffer valid until the running hook returns (`'a`).
        unsafe { found_bytes(found, result) }
    }

    /// Answers the request locally (Envoy's `sendLocalReply`): status, headers, body and the
    /// response-code details Envoy logs (`%RESPONSE_CODE_DETAILS%`). May re-enter the module and
    /// destroy the stream's filter: only [`perform`] calls it (see the module's docs).
    fn send_response(&self, status: u32, headers: &[Header<'_>], body: &[u8], details: &str) {
        let mut raw: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader {
                key_ptr: k.as_ptr(),
                key_length: k.len(),
                value_ptr: v.as_ptr(),
                value_length: v.len(),
            })
            .collect();
        // SAFETY: `ptr` is the live filter of the running hook (Envoy's C++ filter object lives
        // until the hook returns even when the stream ends inside this call: Envoy defers its
        // deletion); Envoy copies the headers, body and details during the call, and `raw`,
        // `headers`, `body`, `details` are the caller's and outlive it.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.ptr.as_ptr(),
                status,
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            )
        }
    }

    /// Resumes a request stopped in `on_request_headers`. May re-enter the module and destroy
    /// the stream's filter: only [`perform`] calls it (see the module's docs).
    fn continue_decoding(&self) {
        // SAFETY: `ptr` is the live filter of the running hook (`on_http_filter_scheduled`, on the
        // stream's own worker); as for `send_response`, Envoy's filter object outlives the hook.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.ptr.as_ptr()) }
    }

    /// A handle that posts an event to this stream's worker from any thread.
    pub fn scheduler(&self) -> Option<Scheduler> {
        // SAFETY: `ptr` is the live filter of the running hook; the returned scheduler is owned
        // by the module from now on (deleted by `Scheduler::drop`).
        let raw =
            unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.ptr.as_ptr()) };
        NonNull::new(raw).map(Scheduler)
    }

    /// Adds `by` to an unlabeled counter of this stream's filter configuration.
    pub fn increment(&self, counter: Option<CounterId>, by: u64) {
        self.metrics().increment(counter, &mut [], by);
    }

    /// Adds `by` to a one-label counter (`define_labeled_counter`), for label value `value`.
    pub fn increment_labeled(&self, counter: Option<CounterId>, value: &str, by: u64) {
        self.metrics()
            .increment(counter, &mut [ModuleBuffer::of(value.as_bytes())], by);
    }

    /// Sets a gauge of this stream's filter configuration.
    pub fn set_gauge(&self, gauge: Option<GaugeId>, value: u64) {
        self.metrics().set_gauge(gauge, value);
    }

    fn metrics(&self) -> Metrics<'a> {
        Metrics {
            ptr: self.ptr,
            increment: envoy_dynamic_module_callback_http_filter_increment_counter,
            set_gauge: envoy_dynamic_module_callback_http_filter_set_gauge,
            _hook: PhantomData,
        }
    }
}

/// Envoy's per-stream scheduler: `commit` posts `on_http_filter_scheduled` to the stream's
/// worker. Envoy's scheduler holds a weak reference to the stream, so committing after the
/// stream ended is a no-op rather than a use-after-free.
#[derive(Debug)]
pub struct Scheduler(NonNull<c_void>);

// SAFETY: moving the scheduler to another thread (the delay timer's) is what the ABI made it
// for: Envoy's scheduler object holds only a weak reference to the stream's filter and the
// worker's dispatcher, `scheduler_commit` posts to that dispatcher (`post` is thread-safe) and
// `scheduler_delete` frees the object, from any thread. Not `Sync`: it is committed and deleted
// once each, by its single owner, through `self` and `drop`.
unsafe impl Send for Scheduler {}

impl Scheduler {
    /// Posts `event_id` to the stream's worker and frees the scheduler.
    pub fn commit(self, event_id: u64) {
        // SAFETY: `self.0` came from `scheduler_new` and is deleted only by `drop`, after this.
        unsafe {
            envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0.as_ptr(), event_id)
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `scheduler_new` and is deleted exactly once, here.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0.as_ptr()) }
    }
}

/// Envoy's per-configuration scheduler: `commit` posts `on_http_filter_config_scheduled` to the
/// main thread. Envoy's side holds a weak reference to the configuration.
#[derive(Debug)]
pub struct ConfigScheduler(NonNull<c_void>);

// SAFETY: as for `Scheduler`: the object holds a weak reference to the configuration and the
// main thread's dispatcher; `commit` posts to that dispatcher (thread-safe) and `delete` frees
// it, from any thread (the poller's, or the main thread's when a configuration goes). Not
// `Sync`: concurrent `commit`s of one scheduler are not needed (the poller commits under the
// listeners' `Mutex`, so `Send` alone makes `PolicySource` `Sync`; asserted below).
unsafe impl Send for ConfigScheduler {}

impl ConfigScheduler {
    /// Posts `event_id` to the configuration on the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: `self.0` came from `scheduler_new` and is deleted only by `drop`; `&self` is
        // not shared across threads (`ConfigScheduler` is not `Sync`), so no commit races
        // another call on this scheduler.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                self.0.as_ptr(),
                event_id,
            )
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `scheduler_new` and is deleted exactly once, here.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0.as_ptr())
        }
    }
}

// What the `Send`/`Sync` claims of this module rest on, checked by the compiler: workers share
// a `FilterConfig` (`on_http_filter_new` reads it on every worker; the main thread drops it),
// the poller thread shares a `PolicySource` with them (holding the configurations'
// `ConfigScheduler`s) and the timer thread receives each stream's `Scheduler`.
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_and_sync::<FilterConfig>();
    send_and_sync::<crate::source::PolicySource>();
    send::<Scheduler>();
    send::<ConfigScheduler>();
};

/// The bytes of an Envoy-owned buffer (null: none).
///
/// # Safety
/// `buffer.ptr` is null or points to `buffer.length` readable bytes that Envoy neither frees nor
/// changes for `'a`. Envoy guarantees that for the buffers it hands to a hook until the hook
/// returns, so `'a` must not outlive the hook.
unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    if buffer.ptr.is_null() {
        return &[];
    }
    // SAFETY: the function's contract.
    unsafe { core::slice::from_raw_parts(buffer.ptr, buffer.length) }
}

/// The bytes of a buffer an Envoy getter filled (`None` when it found nothing).
///
/// # Safety
/// When `found`, [`envoy_bytes`]'s contract holds for `buffer` and `'a`.
unsafe fn found_bytes<'a>(found: bool, buffer: EnvoyBuffer) -> Option<&'a [u8]> {
    if !found || buffer.ptr.is_null() {
        return None;
    }
    // SAFETY: the function's contract.
    Some(unsafe { envoy_bytes(buffer) })
}

/// The stream behind `filter_envoy_ptr` (null: none).
///
/// # Safety
/// `filter_envoy_ptr` is null or the `filter_envoy_ptr` Envoy passed to the running stream hook,
/// and `'a` ends before that hook returns: [`Stream`]'s safe methods call Envoy with it and
/// hand out Envoy's header bytes for `'a`.
unsafe fn stream<'a>(filter_envoy_ptr: *mut c_void) -> Option<Stream<'a>> {
    NonNull::new(filter_envoy_ptr).map(|ptr| Stream {
        ptr,
        _hook: PhantomData,
    })
}

/// The configuration behind `filter_config_envoy_ptr` (null: none).
///
/// # Safety
/// `filter_config_envoy_ptr` is null or the `filter_config_envoy_ptr` Envoy passed to the
/// running config hook (on the main thread), and `'a` ends before that hook returns.
unsafe fn config_handle<'a>(filter_config_envoy_ptr: *mut c_void) -> Option<ConfigHandle<'a>> {
    NonNull::new(filter_config_envoy_ptr).map(|ptr| ConfigHandle {
        ptr,
        _hook: PhantomData,
    })
}

/// The module's configuration behind `filter_config_ptr` (null: none).
///
/// # Safety
/// `filter_config_ptr` is null or a pointer `on_http_filter_config_new` returned whose `destroy`
/// hook has not run, and `'a` ends before the running hook returns (Envoy destroys a
/// configuration only after its last stream and outside its hooks). Shared use from many
/// workers is sound because `FilterConfig` is `Sync` (asserted above).
unsafe fn filter_config<'a>(filter_config_ptr: *const c_void) -> Option<&'a FilterConfig> {
    // SAFETY: the function's contract.
    unsafe { filter_config_ptr.cast::<FilterConfig>().as_ref() }
}

/// The module's filter behind `filter_module_ptr` (null: none).
///
/// # Safety
/// `ptr` is null or a pointer `on_http_filter_new` returned whose `destroy` hook has not run;
/// no other reference to that filter is live for `'a`; and `'a` ends before the hook makes any
/// call that may re-enter the module ([`perform`]), since Envoy may call the stream's other
/// hooks, and `destroy`, inside it. Envoy calls a stream's hooks one at a time on its worker,
/// so within a hook, before [`perform`], the `&mut` is unique.
unsafe fn filter_mut<'a>(ptr: *const c_void) -> Option<&'a mut StreamFilter> {
    // SAFETY: the function's contract.
    unsafe { ptr.cast_mut().cast::<StreamFilter>().as_mut() }
}

/// Frees an object the module handed to Envoy as a `*_module_ptr` (null: nothing to free).
///
/// # Safety
/// `ptr` is null or came from `Box::<T>::into_raw`, it is freed once, and nothing uses it after
/// this call (Envoy's `destroy` hooks come once per object, after its last other hook).
unsafe fn drop_boxed<T>(ptr: *const c_void) {
    if !ptr.is_null() {
        // SAFETY: the function's contract.
        drop(unsafe { Box::from_raw(ptr.cast_mut().cast::<T>()) });
    }
}

/// Which hooks Envoy called inside a [`perform`] call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reentered {
    completed: bool,
    destroyed: bool,
}

thread_local! {
    /// `Some` while a hook is in [`perform`] on this worker (Envoy calls a worker's hooks on
    /// that thread): what Envoy called back inside it so far.
    static REENTERED: Cell<Option<Reentered>> = const { Cell::new(None) };
}

/// Notes a hook Envoy called inside [`perform`] (nothing when it came from elsewhere).
fn note_reentry(note: impl FnOnce(&mut Reentered)) {
    if let Some(mut reentered) = REENTERED.get() {
        note(&mut reentered);
        REENTERED.set(Some(reentered));
    }
}

/// Makes a call that may re-enter the module (module docs). The caller holds no reference into
/// the stream's filter and uses neither the filter nor `stream`'s header bytes afterwards.
fn perform(stream: Stream<'_>, call: HostCall) {
    let name = match call {
        HostCall::Reply(_) => "send_response",
        HostCall::Resume => "continue_decoding",
    };
    let outer = REENTERED.replace(Some(Reentered::default()));
    match call {
        HostCall::Reply(reply) => {
            let headers: Vec<Header<'_>> = reply
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes()))
                .collect();
            stream.send_response(reply.status, &headers, &reply.body, "boifi_fault_abort");
        }
        HostCall::Resume => stream.continue_decoding(),
    }
    // Envoy 1.40 completes a stream inside `send_response` from the scheduled hook and inside
    // `continue_decoding` (the filter's destroy comes after the hook returns, and a reply from
    // the request-headers hook completes after it); the e2e tests read this line to see which
    // order they drove, so they cannot pass without reaching it.
    if let Some(reentered) = REENTERED
        .replace(outer)
        .filter(|r| r.completed || r.destroyed)
    {
        if log_enabled(LogLevel::Debug) {
            let destroyed = if reentered.destroyed {
                " and destroyed its filter"
            } else {
                ""
            };
            log(
                LogLevel::Debug,
                &format!("boifi: Envoy completed the stream{destroyed} inside {name}"),
            );
        }
    }
}

// ----------------------------------------------------------------------------------------------
// Event hooks (Envoy calls these).

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's config pointer for this hook; `handle` lives in this call only.
    let Some(handle) = (unsafe { config_handle(filter_config_envoy_ptr) }) else {
        return core::ptr::null();
    };
    // SAFETY: Envoy hands over `name` and `config` for the duration of this hook, and
    // `FilterConfig::new` copies what it keeps (the slices do not escape this call).
    let (name, config) = unsafe { (envoy_bytes(name), envoy_bytes(config)) };
    let config = FilterConfig::new(&handle, name, config);
    Box::into_raw(Box::new(config)).cast_const().cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    filter_config_envoy_ptr: *mut c_void,
    filter_config_ptr: *const c_void,
    event_id: u64,
) {
    // SAFETY: the pointer came from `on_http_filter_config_new`, and Envoy drops the event when
    // the configuration is gone (its scheduler holds a weak reference), so it is not destroyed.
    let Some(config) = (unsafe { filter_config(filter_config_ptr) }) else {
        return;
    };
    // SAFETY: Envoy's config pointer for this hook; `handle` lives in this call only.
    if let Some(handle) = unsafe { config_handle(filter_config_envoy_ptr) } {
        config.on_scheduled(&handle, event_id);
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(filter_config_ptr: *const c_void) {
    // SAFETY: the pointer came from `Box::into_raw` in `on_http_filter_config_new`, and Envoy
    // destroys a configuration once, after every stream that uses it.
    unsafe { drop_boxed::<FilterConfig>(filter_config_ptr) }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: *const c_void,
    _filter_envoy_ptr: *mut c_void,
) -> *const c_void {
    // SAFETY: the pointer came from `on_http_filter_config_new`; Envoy keeps the configuration
    // alive while it creates streams of it, on any worker (`FilterConfig: Sync`).
    let Some(config) = (unsafe { filter_config(filter_config_ptr) }) else {
        return core::ptr::null();
    };
    Box::into_raw(Box::new(StreamFilter::new(config)))
        .cast_const()
        .cast()
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's filter pointer for this hook; `stream` lives in this call only.
    let Some(stream) = (unsafe { stream(filter_envoy_ptr) }) else {
        return HEADERS_CONTINUE;
    };
    // The filter's state is updated first, and its borrow ends with this block ...
    let headers = {
        // SAFETY: the pointer `on_http_filter_new` returned, not yet destroyed (Envoy calls no
        // hook after `destroy`); no other hook of this stream runs now, and the borrow ends
        // before `perform`.
        let Some(filter) = (unsafe { filter_mut(filter_module_ptr) }) else {
            return HEADERS_CONTINUE;
        };
        filter.on_request_headers(stream)
    };
    // The `x-boifi-evaluated` mark is written now, when nothing read from the request during the
    // filter's block is used any more (setting a header frees Envoy's buffers of its values).
    crate::filter::take_mark(|name, value| {
        if !matches!(headers, Headers::Reply(_)) {
            stream.set_request_header(name, value);
        }
    });
    // ... so that a reply may complete (and destroy) the stream inside `send_response` (Envoy
    // runs the response path at once, then `stream_complete` when the request was whole):
    // nothing of the filter is touched after it, and the status was decided before.
    match headers {
        Headers::Continue => HEADERS_CONTINUE,
        Headers::Hold => HEADERS_STOP_ITERATION,
        Headers::Reply(reply) => {
            perform(stream, HostCall::Reply(reply));
            HEADERS_STOP_ITERATION
        }
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: as in `request_headers`; the borrow ends in this statement, with no call to Envoy.
    match unsafe { filter_mut(filter_module_ptr) } {
        Some(filter) if filter.is_holding() => BODY_STOP_ITERATION_AND_BUFFER,
        _ => BODY_CONTINUE,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) -> u32 {
    // SAFETY: as in `request_body`.
    match unsafe { filter_mut(filter_module_ptr) } {
        Some(filter) if filter.is_holding() => TRAILERS_STOP_ITERATION,
        _ => TRAILERS_CONTINUE,
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // As in `request_headers`: the filter decides and its borrow ends before the reply, which
    // may complete and destroy the stream inside `send_response`.
    let reply = {
        // SAFETY: as in `request_headers`.
        let Some(filter) = (unsafe { filter_mut(filter_module_ptr) }) else {
            return HEADERS_CONTINUE;
        };
        if !filter.awaits_response() {
            return HEADERS_CONTINUE;
        }
        // SAFETY: Envoy's filter pointer for this hook; `stream` lives in this call only.
        let Some(stream) = (unsafe { stream(filter_envoy_ptr) }) else {
            return HEADERS_CONTINUE;
        };
        match filter.on_response_headers(stream) {
            Some(reply) => (stream, reply),
            None => return HEADERS_CONTINUE,
        }
    };
    perform(reply.0, HostCall::Reply(reply.1));
    HEADERS_STOP_ITERATION
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    BODY_CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) -> u32 {
    TRAILERS_CONTINUE
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
) {
    note_reentry(|r| r.completed = true);
    // SAFETY: as in `request_headers`. When Envoy calls this inside `perform` (a reply or a
    // resumed request that ended the stream), the hook that called `perform` holds no borrow
    // of the filter, so this `&mut` is still the only one; it makes no call to Envoy.
    if let Some(filter) = unsafe { filter_mut(filter_module_ptr) } {
        filter.on_stream_complete();
    }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: *const c_void) {
    note_reentry(|r| r.destroyed = true);
    // SAFETY: the pointer came from `Box::into_raw` in `on_http_filter_new`; Envoy destroys a
    // stream's filter once and calls no hook of it afterwards. Inside `perform` no reference to
    // the filter is live (see `filter_mut`), and the hook that called it does not touch the
    // filter again.
    unsafe { drop_boxed::<StreamFilter>(filter_module_ptr) }
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy_ptr: *mut c_void,
    filter_module_ptr: *const c_void,
    event_id: u64,
) {
    // SAFETY: Envoy's filter pointer for this hook; `stream` lives in this call only.
    let Some(stream) = (unsafe { stream(filter_envoy_ptr) }) else {
        return;
    };
    // As in `request_headers`: the filter releases its hold first (so a `stream_complete` or
    // `destroy` inside the call finds nothing held), the borrow ends, then the call is made.
    let call = {
        // SAFETY: as in `request_headers` (Envoy posts the event to the stream's worker and
        // drops it when the stream is gone, so the filter is not destroyed).
        let Some(filter) = (unsafe { filter_mut(filter_module_ptr) }) else {
            return;
        };
        filter.on_scheduled(stream, event_id)
    };
    if let Some(call) = call {
        perform(stream, call);
    }
}

// Hooks Envoy requires but boifi does not use: HTTP callouts and streams (the module polls the
// control plane from its own thread) and the downstream watermarks of terminal filters.

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _callout_id: u64,
    _result: u32,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_handle: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_handle: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_handle: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_handle: u64,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
    _stream_handle: u64,
    _reason: u32,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}

#[no_mangle]
extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: *mut c_void,
    _filter_module_ptr: *const c_void,
) {
}
