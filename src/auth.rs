//! The admin token: who may read what hookbox stored.
//!
//! With `HOOKBOX_ADMIN_TOKEN` set, every route whose `Route::needs_admin` says so answers only a
//! request carrying `Authorization: Bearer <token>`; anything else is 401 before a worker sees it.
//! Unset, those routes stay open (the seed's behaviour), and startup warns when they are open to
//! more than this machine.

use std::net::IpAddr;

use crate::config::{Config, Secret};
use crate::error::Error;
use crate::http::Request;
use crate::router::Route;

/// `Ok` when `route` is open, or `request` carries the token; else `Error::BearerRequired`.
pub fn check(route: Route, request: &Request, token: Option<&Secret>) -> Result<(), Error> {
    match token {
        Some(token) if route.needs_admin() => {
            if presented(request.header("authorization")).is_some_and(|given| matches(token, given))
            {
                Ok(())
            } else {
                Err(Error::BearerRequired)
            }
        }
        _ => Ok(()),
    }
}

/// The credentials of `Authorization: Bearer <credentials>` (the scheme is case-insensitive,
/// as RFC 9110 says every auth scheme is).
fn presented(header: Option<&str>) -> Option<&str> {
    let (scheme, credentials) = header?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim_start())
}

/// Constant time: neither the token's bytes nor its length show in how long a refusal takes.
fn matches(token: &Secret, given: &str) -> bool {
    crate::signature::same_secret(token.expose(), given.as_bytes())
}

/// Whether the read routes are open to other machines: no token, and `HOST` is not a loopback
/// address. Startup warns then.
pub fn reads_open_to_the_network(config: &Config) -> bool {
    let loopback = config.host == "localhost"
        || config
            .host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    config.admin_token.is_none() && !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(route: Route, authorization: Option<&str>, token: Option<&str>) -> u16 {
        let mut request = Request::new("GET", "/messages", b"");
        if let Some(value) = authorization {
            request
                .headers
                .push(("Authorization".to_owned(), value.to_owned()));
        }
        let token = token.map(Secret::new);
        match check(route, &request, token.as_ref()) {
            Ok(()) => 200,
            Err(error) => error.status(),
        }
    }

    #[test]
    fn a_locked_route_needs_exactly_the_token() {
        let token = Some("s3cret");
        assert_eq!(answer(Route::Messages, Some("Bearer s3cret"), token), 200);
        assert_eq!(answer(Route::Messages, Some("bearer s3cret"), token), 200);
        assert_eq!(answer(Route::Stats, Some("BEARER  s3cret "), token), 200);
        for wrong in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Bearer S3CRET"),
            Some("Basic s3cret"),
            Some("s3cret"),
            Some("Bearers3cret"),
        ] {
            assert_eq!(answer(Route::Metrics, wrong, token), 401, "{wrong:?}");
        }
    }

    #[test]
    fn open_routes_and_an_unset_token_need_nothing() {
        for route in [Route::Webhook, Route::Live, Route::Ready, Route::Unmatched] {
            assert_eq!(answer(route, None, Some("s3cret")), 200, "{route:?}");
        }
        assert_eq!(answer(Route::Messages, None, None), 200);
    }

    #[test]
    fn open_reads_are_flagged_only_off_loopback() {
        let mut config = Config::for_database("x.db", None);
        for (host, open) in [
            ("127.0.0.1", false),
            ("::1", false),
            ("localhost", false),
            ("127.0.0.2", false),
            ("0.0.0.0", true),
            ("::", true),
            ("192.168.1.10", true),
        ] {
            config.host = host.to_owned();
            assert_eq!(reads_open_to_the_network(&config), open, "{host}");
        }
        config.admin_token = Some(Secret::new("t"));
        assert!(!reads_open_to_the_network(&config));
    }
}
