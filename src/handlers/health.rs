//! Probes and metrics: `GET /health/live`, `GET /health/ready`, `GET /metrics`.

use serde_json::json;

use super::Context;
use crate::error::Error;
use crate::http::{Request, Response};

/// 200 whenever a worker can answer at all.
pub fn live(_ctx: &mut Context<'_>, _request: &Request) -> Result<Response, Error> {
    Ok(Response::json(200, &json!({"status": "ok"})))
}

/// 200 only when the secret is set and the database answers with the expected schema.
pub fn ready(ctx: &mut Context<'_>, _request: &Request) -> Result<Response, Error> {
    let problem = if ctx.config.webhook_secret.is_none() {
        Some("webhook secret not configured".to_owned())
    } else {
        ctx.db.check_ready().err()
    };
    Ok(match problem {
        None => Response::json(200, &json!({"status": "ready"})),
        Some(detail) => Response::json(503, &json!({"status": "not ready", "detail": detail})),
    })
}

pub fn metrics(ctx: &mut Context<'_>, _request: &Request) -> Result<Response, Error> {
    Ok(Response::text(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        ctx.metrics.render(),
    ))
}
