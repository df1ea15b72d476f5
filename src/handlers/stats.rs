//! `GET /stats`: totals, top senders and the first/last message instants.

use super::{Context, Reply, read};
use crate::error::Error;
use crate::http::{Request, Response};

pub fn get(ctx: &mut Context<'_>, _request: &Request) -> Result<Reply, Error> {
    let stats = read(ctx.metrics, ctx.store.stats())?;
    Ok(Response::json(200, &stats).into())
}
