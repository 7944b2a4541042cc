//! The data-plane benchmark's SDK-only row: a filter on the proxy-wasm Rust SDK whose request
//! callback does nothing. Between the floor module (`boifi-bench/modules/floor.wat`) and boifi,
//! it shows what the SDK's dispatch and size cost on their own.
#![warn(missing_docs)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

/// The root context: makes one [`Noop`] per request.
#[derive(Debug)]
pub struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Per request: nothing.
#[derive(Debug)]
pub struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}

#[cfg(target_arch = "wasm32")]
#[allow(
    unsafe_code,
    reason = "the SDK's entry point macro exports `_initialize`"
)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::NoopRoot)
        });
    }}
}
