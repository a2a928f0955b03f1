//! The Worker's fetch handler: converts the Workers request to `http::Request<Body>`, runs the
//! gateway, and converts the answer back (streaming bodies stay streams). The configuration is
//! parsed once per isolate: bindings cannot change while an isolate lives.

use std::cell::OnceCell;
use std::rc::Rc;

use bytes::Bytes;
use futures_util::StreamExt;
use worker::{event, Context, Env};

use super::CfHost;
use crate::api::envelope::error_body;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::gateway;
use crate::ports::{Body, BodyError};

thread_local! {
    static CONFIG: OnceCell<Rc<Result<Config, ConfigError>>> = const { OnceCell::new() };
}

#[event(fetch)]
pub async fn fetch(req: worker::Request, env: Env, ctx: Context) -> worker::Result<worker::Response> {
    let host = CfHost::new(env, ctx);
    let config = CONFIG.with(|cell| {
        cell.get_or_init(|| {
            let config = Config::from_vars(&host);
            gateway::report_config(&host, config.as_ref());
            Rc::new(config)
        })
        .clone()
    });
    let request = match into_http(req) {
        Ok(r) => r,
        Err(why) => {
            let err = ApiError::bad_request("invalid_request", format!("The HTTP request could not be read: {why}."));
            let body = error_body(&err);
            return Ok(worker::Response::from_bytes(body.to_vec())?.with_status(400));
        }
    };
    let response = gateway::handle(&host, config.as_ref().as_ref(), request).await;
    from_http(response)
}

fn into_http(mut req: worker::Request) -> Result<http::Request<Body>, String> {
    let method = req.method();
    let url = req.url().map_err(|e| e.to_string())?;
    let mut builder = http::Request::builder().method(method.as_ref()).uri(url.as_str());
    for (name, value) in req.headers().entries() {
        builder = builder.header(name, value);
    }
    let body = match method {
        worker::Method::Get | worker::Method::Head | worker::Method::Options => Body::empty(),
        _ => match req.stream() {
            Ok(stream) => {
                Body::Stream(Box::pin(stream.map(|chunk| chunk.map(Bytes::from).map_err(|e| BodyError(e.to_string())))))
            }
            // No body at all (a POST without one): the core reports it as invalid JSON.
            Err(_) => Body::empty(),
        },
    };
    builder.body(body).map_err(|e| e.to_string())
}

fn from_http(response: http::Response<Body>) -> worker::Result<worker::Response> {
    let (parts, body) = response.into_parts();
    let headers = worker::Headers::new();
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            headers.append(name.as_str(), value)?;
        }
    }
    let response = match body {
        Body::Full(bytes) if bytes.is_empty() => worker::Response::empty()?,
        Body::Full(bytes) => worker::Response::from_bytes(bytes.to_vec())?,
        Body::Stream(stream) => worker::Response::from_stream(
            stream.map(|chunk| chunk.map(|b| b.to_vec()).map_err(|e| worker::Error::RustError(e.to_string()))),
        )?,
    };
    Ok(response.with_status(parts.status.as_u16()).with_headers(headers))
}
