//! The HTTP face of the API server (actix-web): requests become [`ApiRequest`]s for the shared
//! handler; watch bodies are streamed as chunked JSON lines.

use crate::handler::{ApiState, MAX_BODY};
use crate::request::{ApiRequest, Body};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
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
    let resp = state.handle(api_req, "http").await;
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

/// Binds the API port; the returned server runs until its handle stops it.
pub fn serve(
    state: ApiState,
    streams: crate::stream::StreamContext,
    bind: SocketAddr,
    workers: usize,
) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    crate::stream::register_metrics();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .app_data(web::Data::new(streams.clone()))
            // Streaming pod subresources take the raw payload (upgrades) rather than a body.
            .service(
                web::resource("/api/v1/namespaces/{namespace}/pods/{name}/{subresource:log|exec|attach|portforward}")
                    .to(crate::stream::serve),
            )
            // Bodies over MAX_BODY are read so that the handler answers with a Status.
            .app_data(web::PayloadConfig::new(MAX_BODY * 4))
            .default_service(web::to(handle))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(2)
    .bind(bind)?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.run(), addr))
}
