//! The server's small HTTP/1.1 endpoints (Prometheus metrics, the web client's page): hyper, one task per
//! connection, a function from request to response.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use hyper::body::Body;
use hyper::{Request, Response};

/// Bind a TCP listener at `addr` for [`serve`] on `runtime`; the address it got (port 0 picks one).
pub(crate) fn bind(
    addr: std::net::SocketAddr,
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<(tokio::net::TcpListener, std::net::SocketAddr)> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let _guard = runtime.enter();
    Ok((tokio::net::TcpListener::from_std(listener)?, local))
}

/// Answer every request on `listener` with `respond`, until the runtime stops.
pub(crate) async fn serve<F, Fut, B>(listener: tokio::net::TcpListener, respond: F)
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let respond = Arc::new(respond);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let respond = respond.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let answer = respond(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(%e, "an HTTP connection failed");
            }
        });
    }
}
