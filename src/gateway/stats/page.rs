//! `GET /admin/stats`: the stats page. Static and public, it holds no data: it asks for an admin
//! key (kept in the tab's `sessionStorage`, never in a URL) and sends it as a Bearer header to
//! `/admin/metrics.json`, so a first load without a header is safe to answer. uPlot (MIT, npm
//! `uplot` 1.6.32, vendored next to this file with its licence) is embedded: no CDN.
//! Must not: carry data, or load anything from another origin (its CSP forbids it).

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;

use crate::ports::Body;

/// The page, assembled at compile time: our HTML around uPlot's CSS and script.
pub const PAGE: &str = concat!(
    include_str!("page-head.html"),
    include_str!("uPlot.min.css"),
    include_str!("page-body.html"),
    include_str!("uPlot.iife.min.js"),
    include_str!("page-script.html"),
);

/// Inline script and style only, requests to this origin only.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn page() -> Response<Body> {
    let mut response = Response::new(Body::Full(PAGE.into()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}
