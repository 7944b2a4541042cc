//! The fixed upstream behind the proxy: a small HTTP/1.1 server answering every request with
//! the same 200 at once, on its own thread (one core's worth at most), until dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::error::BenchError;

/// The answer body (small, like a health or JSON API answer).
pub const BODY: &str = "ok\n";

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Starts on a free loopback port.
    pub fn start() -> Result<Upstream, BenchError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| BenchError::io("binding the upstream", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| BenchError::io("binding the upstream", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::io("binding the upstream", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BenchError::io("starting the upstream's runtime", e))?;
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("upstream".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let _ = stream.set_nodelay(true);
                                tokio::spawn(serve(stream));
                            }
                            _ = stopped.changed() => return,
                        }
                    }
                });
            })
            .map_err(|e| BenchError::io("starting the upstream's thread", e))?;
        Ok(Upstream {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn serve(stream: tokio::net::TcpStream) {
    let service = service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
            BODY.as_bytes(),
        ))))
    });
    // A client hanging up mid-request is normal under load: nothing to report.
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
