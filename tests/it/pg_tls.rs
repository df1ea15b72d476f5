//! TLS to PostgreSQL: `sslmode` and `sslrootcert` with libpq's meanings. `require` runs against
//! the local server (it has `ssl = on`); the certificate checks run against a TLS-terminating
//! proxy (`pg_proxy`) holding a certificate this test makes, in front of the same server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hookbox::Config;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::pg_proxy::Proxy;
use crate::support::{PgDatabase, SECRET, TempDir, TestServer, message, postgres_available};

const LOCAL: &str = "127.0.0.1:5432";

/// A test-made CA and a server certificate it signed for `names`.
struct Pki {
    ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

fn pki(names: &[&str]) -> Pki {
    pki_named("hookbox test CA", names)
}

fn pki_named(ca_name: &str, names: &[&str]) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone(), ca.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: Arc::new(server),
    }
}

fn write_ca(dir: &TempDir, name: &str, pki: &Pki) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, &pki.ca_pem).unwrap();
    path
}

/// `db`'s URL with its host and port replaced by `host:port`, and `params` appended.
fn url_via(db: &PgDatabase, host: &str, port: u16, params: &str) -> String {
    let url = db.url();
    let at = url.find('@').expect("a user in the test URL") + 1;
    let slash = at + url[at..].find('/').unwrap();
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!(
        "{}{host}:{port}{}{joiner}{params}",
        &url[..at],
        &url[slash..]
    )
}

fn local() -> SocketAddr {
    LOCAL.parse().unwrap()
}

fn config(url: String) -> Config {
    let mut config = Config::for_postgres(url, Some(SECRET));
    config.workers = 1;
    config
}

fn start(url: String) -> TestServer {
    TestServer::start_on(config(url))
}

/// Startup's error, which must say what went wrong.
fn refused(url: String) -> String {
    match hookbox::start(config(url)) {
        Ok(_) => panic!("the server started"),
        Err(error) => error.to_string(),
    }
}

fn sslrootcert(path: &Path) -> String {
    format!("sslrootcert={}", path.display())
}

#[test]
fn sslmode_require_encrypts_every_connection_to_the_local_server() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let server = start(url_via(&db, "127.0.0.1", 5432, "sslmode=require"));
    assert_eq!(server.get("/health/ready").status, 200);
    let body = message("tls-1", "+1", "2025-01-15T10:00:00Z", Some("over TLS"));
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    let (ours, encrypted): (i64, i64) = {
        let row = db
            .client()
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl)
                 FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
                 WHERE a.datname = current_database() AND a.application_name = 'hookbox'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(ours >= 2, "the writer's and a worker's connection: {ours}");
    assert_eq!(encrypted, ours, "every hookbox connection is TLS");
}

#[test]
fn sslmode_disable_never_encrypts() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let server = start(url_via(&db, "127.0.0.1", 5432, "sslmode=disable"));
    assert_eq!(server.get("/health/ready").status, 200);
    let encrypted: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'hookbox' AND s.ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 0);
}

#[test]
fn verify_full_accepts_a_chain_to_sslrootcert_with_the_right_host_name() {
    if !postgres_available() {
        return;
    }
    let dir = TempDir::new();
    let pki = pki(&["localhost", "127.0.0.1"]);
    let ca = write_ca(&dir, "ca.pem", &pki);
    let proxy = Proxy::tls(local(), Arc::clone(&pki.server));
    let db = PgDatabase::create();
    let params = format!("sslmode=verify-full&{}", sslrootcert(&ca));
    let server = start(url_via(&db, "127.0.0.1", proxy.addr().port(), &params));
    assert_eq!(server.get("/health/ready").status, 200);
    let body = message("tls-vf", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    assert_eq!(server.get("/messages").json()["total"], 1);
}

#[test]
fn a_certificate_from_another_ca_stops_startup_with_a_clear_error() {
    if !postgres_available() {
        return;
    }
    let dir = TempDir::new();
    let served = pki(&["localhost", "127.0.0.1"]);
    let other = pki_named("another CA", &["localhost", "127.0.0.1"]);
    let wrong_ca = write_ca(&dir, "other-ca.pem", &other);
    let proxy = Proxy::tls(local(), Arc::clone(&served.server));
    let db = PgDatabase::create();
    for mode in ["verify-full", "verify-ca", "require"] {
        let params = format!("sslmode={mode}&{}", sslrootcert(&wrong_ca));
        let error = refused(url_via(&db, "127.0.0.1", proxy.addr().port(), &params));
        assert!(
            error.contains("invalid peer certificate: UnknownIssuer"),
            "sslmode={mode}: {error}"
        );
        assert!(error.contains("127.0.0.1"), "names the server: {error}");
    }
    // Without sslrootcert, require encrypts but checks nothing (libpq's meaning).
    let server = start(url_via(
        &db,
        "127.0.0.1",
        proxy.addr().port(),
        "sslmode=require",
    ));
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    if !postgres_available() {
        return;
    }
    let dir = TempDir::new();
    let pki = pki(&["db.example"]);
    let ca = write_ca(&dir, "ca.pem", &pki);
    let proxy = Proxy::tls(local(), Arc::clone(&pki.server));
    let db = PgDatabase::create();
    let port = proxy.addr().port();
    let full = format!("sslmode=verify-full&{}", sslrootcert(&ca));
    let error = refused(url_via(&db, "127.0.0.1", port, &full));
    assert!(error.contains("certificate not valid for name"), "{error}");
    let chain_only = format!("sslmode=verify-ca&{}", sslrootcert(&ca));
    let server = start(url_via(&db, "127.0.0.1", port, &chain_only));
    assert_eq!(server.get("/health/ready").status, 200);
}

#[test]
fn a_bad_sslmode_or_a_missing_sslrootcert_is_a_startup_error_naming_database_url() {
    for url in [
        "postgres://u@127.0.0.1/db?sslmode=verify_full",
        "postgres://u@127.0.0.1/db?sslmode=allow",
        "postgres://u@127.0.0.1/db?sslmode=require&sslrootcert=system",
    ] {
        let error = Config::from_lookup(|name| (name == "DATABASE_URL").then(|| url.to_owned()))
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert_eq!(error.variable, "DATABASE_URL", "{url}");
        assert!(error.reason.contains("sslmode"), "{url}: {}", error.reason);
    }
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let params = "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem";
    let error = refused(url_via(&db, "127.0.0.1", 5432, params));
    assert!(
        error.contains("DATABASE_URL") && error.contains("/nonexistent/ca.pem"),
        "{error}"
    );
}
