//! The upstream application of a pod: answers every HTTP request with 200 and every gRPC
//! call with an empty message and `grpc-status: 0`, and says which pod answered.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::error::MeshError;

/// The header naming the pod that answered.
pub const POD_HEADER: &str = "x-mesh-pod";

/// Who this app is.
#[derive(Debug, Clone)]
pub struct AppInfo {
    /// Service name.
    pub service: String,
    /// Pod name.
    pub pod: String,
}

/// A gRPC answer: one empty message, then `grpc-status: 0` in the trailers.
#[derive(Debug, Default)]
struct GrpcReply {
    sent: u8,
}

impl Body for GrpcReply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.sent {
            // Uncompressed flag + zero length: an empty protobuf message.
            0 => Some(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
            1 => {
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("0"));
                Some(Frame::trailers(trailers))
            }
            _ => None,
        };
        self.sent = self.sent.saturating_add(1);
        Poll::Ready(frame.map(Ok))
    }
}

type Reply = Either<Full<Bytes>, GrpcReply>;

async fn handle(req: Request<Incoming>, info: Arc<AppInfo>) -> Result<Response<Reply>, Infallible> {
    let grpc = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    let path = req.uri().path().to_owned();
    // Read the request to its end so the connection can be reused.
    let _ = req.into_body().collect().await;
    let pod = HeaderValue::from_str(&info.pod).unwrap_or(HeaderValue::from_static("unknown"));
    let mut builder = Response::builder().status(200).header(POD_HEADER, pod);
    let body = if grpc {
        builder = builder.header(CONTENT_TYPE, "application/grpc");
        Either::Right(GrpcReply::default())
    } else {
        builder = builder.header(CONTENT_TYPE, "text/plain");
        Either::Left(Full::new(Bytes::from(format!(
            "{} {} {path}\n",
            info.service, info.pod
        ))))
    };
    Ok(builder
        .body(body)
        .unwrap_or_else(|_| Response::new(Either::Left(Full::new(Bytes::new())))))
}

/// Serves on `addr` (HTTP/1.1 and HTTP/2 with prior knowledge) until the parent process
/// dies (so an app never outlives a killed test run).
pub fn run(addr: SocketAddr, info: AppInfo) -> Result<(), MeshError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| MeshError::io("tokio runtime", e))?;
    runtime.block_on(serve(addr, info))
}

async fn serve(addr: SocketAddr, info: AppInfo) -> Result<(), MeshError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| MeshError::io(addr.to_string(), e))?;
    let info = Arc::new(info);
    let parent = nix::unistd::getppid();
    let mut orphan_check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let info = Arc::clone(&info);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&info)));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = orphan_check.tick() => {
                if nix::unistd::getppid() != parent {
                    return Ok(());
                }
            }
        }
    }
}
