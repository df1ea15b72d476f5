//! `DATABASE_URL` spellings that are accepted: relative, absolute, plain path, and the default.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;

use super::harness::*;
use crate::support::{TempDir, message};

/// Starts in `cwd` with `url`, stores one message, stops, and returns the run's "listening" line.
fn store_one_with(cwd: &Path, url: Option<&str>) -> Value {
    let mut launch = Launch::new(cwd).unset("DATABASE_URL");
    if let Some(url) = url {
        launch = launch.env("DATABASE_URL", url);
    }
    let mut proc = launch.spawn();
    let listening = proc.wait_for("listening", |json| json["msg"] == "listening");
    let addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let response = post_signed(addr, &message("url-1", FROM, TS, None), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{url:?}: {}", run.describe());
    listening
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn database_url_relative_to_the_working_directory() {
    let cwd = TempDir::new();
    store_one_with(cwd.path(), Some("sqlite:///rel.db"));
    let db = cwd.path().join("rel.db");
    assert!(is_sqlite_file(&db), "{:?}", entries(cwd.path()));
    assert_eq!(stored_rows(&db), 1);

    let nested = TempDir::new();
    std::fs::create_dir(nested.path().join("data")).unwrap();
    store_one_with(nested.path(), Some("sqlite:///data/app.db"));
    assert_eq!(stored_rows(&nested.path().join("data/app.db")), 1);
}

#[test]
fn database_url_absolute_path() {
    let cwd = TempDir::new();
    let elsewhere = TempDir::new();
    let db = elsewhere.path().join("abs.db");
    assert!(db.is_absolute());
    let url = format!("sqlite:///{}", db.display());
    assert!(url.starts_with("sqlite:////"), "{url}");
    store_one_with(cwd.path(), Some(&url));
    assert!(is_sqlite_file(&db), "{:?}", entries(elsewhere.path()));
    assert_eq!(stored_rows(&db), 1);
    assert_eq!(
        entries(cwd.path()),
        Vec::<String>::new(),
        "nothing in the cwd"
    );
}

#[test]
fn database_url_bare_path_and_default() {
    let cwd = TempDir::new();
    store_one_with(cwd.path(), Some("bare.db"));
    assert_eq!(stored_rows(&cwd.path().join("bare.db")), 1);

    let elsewhere = TempDir::new();
    let absolute = elsewhere.path().join("bare-abs.db");
    store_one_with(cwd.path(), Some(absolute.to_str().unwrap()));
    assert_eq!(stored_rows(&absolute), 1);

    let fresh = TempDir::new();
    store_one_with(fresh.path(), None);
    assert_eq!(stored_rows(&fresh.path().join("hookbox.db")), 1);
}
