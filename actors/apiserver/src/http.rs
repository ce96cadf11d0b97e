//! The HTTP face of the API server (actix-web): requests become [`ApiRequest`]s for the shared
//! handler; watch bodies are streamed as chunked JSON lines.

use crate::connection::Connection;
use crate::handler::{ApiState, MAX_BODY};
use crate::request::{ApiRequest, Body};
use actix_web::{web, App, HttpRequest, HttpResponse};
use futures::StreamExt;
use std::net::SocketAddr;

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<ApiState>) -> HttpResponse {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let api_req = ApiRequest {
        method: req.method().as_str().to_string(),
        path: req.path().to_string(),
        query: req.query_string().to_string(),
        content_type: header("content-type"),
        accept: header("accept"),
        body: body.to_vec(),
        user_agent: header("user-agent").unwrap_or_default(),
    };
    let presented = presented(&req);
    let resp = state.handle_presented(api_req, "http", &presented).await;
    let mut builder = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(resp.status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    builder.insert_header(("Content-Type", resp.content_type.as_str()));
    builder.insert_header(("Cache-Control", "no-cache, private"));
    for w in &resp.warnings {
        builder.append_header(("Warning", w.as_str()));
    }
    match resp.body {
        Body::Full(b) => builder.body(b),
        Body::Stream(s) => {
            builder.insert_header(("Transfer-Encoding", "chunked"));
            builder.streaming(s.map(Ok::<_, std::convert::Infallible>))
        }
    }
}

/// What a request presented: its connection's channel (kept by `serve` as connection data)
/// and its credential headers.
pub(crate) fn presented(req: &HttpRequest) -> crate::authn::Presented {
    // Every connection `serve` accepts has its channel; a request without one is refused.
    let channel = req
        .conn_data::<crate::authn::Channel>()
        .cloned()
        .unwrap_or(crate::authn::Channel::Tls(crate::tls::PeerAuth::Invalid));
    crate::authn::Presented::from_headers(
        channel,
        req.headers().iter().filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
    )
}

/// Binds the API port; the returned server runs until its handle stops it.
///
/// The server is actix-web's HTTP/1 service under actix-server, as `HttpServer` assembles it,
/// with two steps in front: the TLS handshake (unless `tls` is `None`: `--insecure-http`),
/// and a look at the first request: a plain SPDY upgrade of a pod stream is served by
/// [`crate::stream::raw`], since actix-http gives non-WebSocket upgrades no payload.
pub fn serve(
    state: ApiState,
    streams: crate::stream::StreamContext,
    bind: SocketAddr,
    workers: usize,
    tls: Option<crate::tls::ServerTls>,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    use actix_service::{fn_factory, fn_service, map_config, IntoServiceFactory, Service, ServiceFactory};
    crate::stream::register_metrics();
    let listener = std::net::TcpListener::bind(bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server = actix_server::Server::build()
        .workers(workers)
        .disable_signals()
        .shutdown_timeout(2)
        .listen("kubus-api", listener, move || {
            let (state, streams, tls) = (state.clone(), streams.clone(), tls.clone());
            let app = {
                let (state, streams) = (state.clone(), streams.clone());
                App::new()
                    .app_data(web::Data::new(state))
                    .app_data(web::Data::new(streams))
                    // Streaming pod subresources take the raw payload (upgrades) rather than a body.
                    .service(
                        web::resource(
                            "/api/v1/namespaces/{namespace}/pods/{name}/{subresource:log|exec|attach|portforward}",
                        )
                        .to(crate::stream::serve),
                    )
                    // Bodies over MAX_BODY are read so that the handler answers with a Status.
                    .app_data(web::PayloadConfig::new(MAX_BODY * 4))
                    .default_service(web::to(handle))
            };
            let http = actix_http::HttpService::build()
                .local_addr(addr)
                // Each request reads how its connection authenticated (`presented`).
                .on_connect_ext(|conn: &Connection, data: &mut actix_http::Extensions| {
                    data.insert(conn.channel.clone());
                })
                // Only the Host-header fallback of connection info reads this config.
                .finish(map_config(app.into_factory(), |_| actix_web::dev::AppConfig::default()));
            fn_factory(move || {
                let http = http.new_service(());
                let (state, streams, tls) = (state.clone(), streams.clone(), tls.clone());
                async move {
                    let http = std::rc::Rc::new(http.await.map_err(|_| ())?);
                    Ok::<_, ()>(fn_service(move |io: actix_web::rt::net::TcpStream| {
                        let (http, state, streams, tls) = (http.clone(), state.clone(), streams.clone(), tls.clone());
                        async move {
                            let peer = io.peer_addr().ok();
                            let mut conn = match Connection::accept(io, tls.as_ref()).await {
                                Ok(c) => c,
                                Err(e) => {
                                    crate::metrics::TLS_HANDSHAKE_ERRORS.inc();
                                    tracing::debug!(error = %e, ?peer, "TLS handshake failed");
                                    return Ok(());
                                }
                            };
                            match crate::stream::raw::sniff(&mut conn).await {
                                Some(head) => crate::stream::raw::serve(conn, head, state, streams).await,
                                None => {
                                    if let Err(e) = http.call((conn, actix_http::Protocol::Http1, peer)).await {
                                        tracing::debug!(error = ?e, "HTTP connection ended with an error");
                                    }
                                }
                            }
                            Ok::<_, ()>(())
                        }
                    }))
                }
            })
        })?
        .run();
    Ok((server, addr))
}
