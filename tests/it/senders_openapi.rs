//! `GET /openapi.json` is the committed `docs/openapi.json`, byte for byte, and documents
//! every route the router knows (and no other).
