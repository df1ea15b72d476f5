//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, as committed in
//! `docs/openapi.json` (built into the binary, so the two cannot differ; a test holds the
//! document to the router).

use crate::http::{Request, Response};

/// The committed document.
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub fn get(_request: &Request) -> Response {
    Response::text(200, "application/json", DOCUMENT.as_bytes().to_vec())
}
