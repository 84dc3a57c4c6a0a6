//! The web dashboard: one HTML page, its ES modules and a stylesheet, compiled into the
//! binary so the server needs no build step, no files beside it and no CDN.
//!
//! The page holds no data: it reads the same JSON API as every other client (with
//! the token the user types in, when the server has one), so serving it needs no
//! token itself.

use axum::{
    body::Body,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use crate::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// The page, its stylesheet and its script: ES modules, `app.js` the entry point.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../assets/app.css"),
    },
    script("api.js", include_str!("../assets/api.js")),
    script("app.js", include_str!("../assets/app.js")),
    script("chart.js", include_str!("../assets/chart.js")),
    script("confusion.js", include_str!("../assets/confusion.js")),
    script("constants.js", include_str!("../assets/constants.js")),
    script("contour.js", include_str!("../assets/contour.js")),
    script("controls.js", include_str!("../assets/controls.js")),
    script("curves.js", include_str!("../assets/curves.js")),
    script("dom.js", include_str!("../assets/dom.js")),
    script("edf.js", include_str!("../assets/edf.js")),
    script("export.js", include_str!("../assets/export.js")),
    script("filter.js", include_str!("../assets/filter.js")),
    script("format.js", include_str!("../assets/format.js")),
    script("history.js", include_str!("../assets/history.js")),
    script("importance.js", include_str!("../assets/importance.js")),
    script("list.js", include_str!("../assets/list.js")),
    script("pages.js", include_str!("../assets/pages.js")),
    script("parallel.js", include_str!("../assets/parallel.js")),
    script("slice.js", include_str!("../assets/slice.js")),
    script("sse.js", include_str!("../assets/sse.js")),
    script("stats.js", include_str!("../assets/stats.js")),
    script("study.js", include_str!("../assets/study.js")),
    script("table.js", include_str!("../assets/table.js")),
    script("timeline.js", include_str!("../assets/timeline.js")),
];

const fn script(name: &'static str, body: &'static str) -> Asset {
    Asset {
        name,
        content_type: "text/javascript; charset=utf-8",
        body,
    }
}

/// Scripts and styles only from this server; no inline script, no third parties.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; \
                   script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

fn serve(name: &str) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no dashboard asset `{name}`")))?;
    // For work on the dashboard itself: read the files from a folder on every request
    // instead of the copies compiled in, so edits show without a rebuild.
    let body: Body = match std::env::var_os("TUNER_DASHBOARD_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(asset.name))
            .map_err(|e| ApiError::NotFound(format!("TUNER_DASHBOARD_DIR: {}: {e}", asset.name)))?
            .into(),
        None => asset.body.into(),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `GET /`: the dashboard page.
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    summary = "The web dashboard (HTML; reads this API with the token you give it)",
    security(()),
    responses((status = 200, description = "The page", content_type = "text/html", body = String))
)]
pub async fn index() -> Result<Response, ApiError> {
    serve("index.html")
}

/// `GET /assets/{name}`: its scripts and stylesheet.
#[utoipa::path(
    get,
    path = "/assets/{name}",
    tag = "service",
    summary = "The dashboard's scripts and stylesheet",
    security(()),
    params(("name" = String, Path, description = "app.css, app.js or another of its modules")),
    responses(
        (status = 200, description = "The file", content_type = "text/plain", body = String),
        (status = 404, description = "No such file", body = tuner_api::ErrorBody)
    )
)]
pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    serve(&name)
}

/// Paths that serve the dashboard and so need no token.
pub fn is_public(path: &str) -> bool {
    path == "/" || path.starts_with("/assets/")
}
