//! Probes and metrics: `GET /health/live`, `GET /health/ready`, `GET /metrics`.

use serde_json::json;

use super::{Context, Reply};
use crate::error::Error;
use crate::http::{Request, Response};

/// 200 whenever a worker can answer at all.
pub fn live(_ctx: &mut Context<'_>, _request: &Request) -> Result<Reply, Error> {
    Ok(Response::json(200, &json!({"status": "ok"})).into())
}

/// 200 only when the secret is set, the database answers with the expected schema, and the
/// last write did not fail (see `writer::StorageHealth`).
pub fn ready(ctx: &mut Context<'_>, _request: &Request) -> Result<Reply, Error> {
    let problem = if ctx.config.webhook_secret.is_none() {
        Some("webhook secret not configured".to_owned())
    } else {
        ctx.store
            .check_ready()
            .err()
            .or_else(|| ctx.storage.problem())
    };
    let response = match problem {
        None => Response::json(200, &json!({"status": "ready"})),
        Some(detail) => Response::json(503, &json!({"status": "not ready", "detail": detail})),
    };
    Ok(response.into())
}

pub fn metrics(ctx: &mut Context<'_>, _request: &Request) -> Result<Reply, Error> {
    let exposition = ctx.metrics.render();
    Ok(Response::text(200, "text/plain; version=0.0.4; charset=utf-8", exposition).into())
}
