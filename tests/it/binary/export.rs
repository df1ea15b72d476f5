//! `hookbox export` as a Unix filter: it opens the store read-only (a missing file is "no such
//! database" and nothing is created; a read-only snapshot works), a reader that goes away ends it
//! quietly with exit 0, and an output that fails is an output error, not the store's.

use std::process::{Command, Stdio};

use super::harness::*;
use crate::support::TempDir;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `count` valid NDJSON lines, about 100 bytes each.
pub fn ndjson(count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "{{\"message_id\":\"m{i:06}\",\"from\":\"+91{}\",\"to\":\"+1\",\"ts\":\"{TS}\",\
                 \"text\":\"message number {i} with some words in it\"}}\n",
                i % 7
            )
        })
        .collect()
}

/// A launch on `test.db` in `dir`, holding `count` messages imported through the binary.
fn stocked(dir: &TempDir, count: usize) -> Launch {
    let launch = Launch::new(dir.path());
    let out = launch.run_args(&["import"], ndjson(count).as_bytes());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    launch
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn export_of_a_missing_database_says_so_and_creates_nothing() {
    let dir = TempDir::new();
    for url in ["sqlite:///nope.db", "nope.db"] {
        let out = Launch::new(dir.path())
            .env("DATABASE_URL", url)
            .run_args(&["export"], b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url}: {stderr}");
        assert!(stderr.contains("no such database"), "{url}: {stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(
            entries(dir.path()),
            Vec::<String>::new(),
            "{url}: created a file"
        );
    }
}

#[test]
fn export_reads_a_read_only_snapshot_and_changes_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let launch = stocked(&dir, 50);
    let expected = launch.run_args(&["export"], b"");
    assert_eq!(
        expected.status.code(),
        Some(0),
        "{}",
        text(&expected.stderr)
    );
    assert_eq!(text(&expected.stdout).lines().count(), 50);

    // The snapshot: the database file alone, in a directory nobody may write.
    let snapshot = TempDir::new();
    let db = snapshot.path().join("snap.db");
    std::fs::copy(dir.path().join("test.db"), &db).unwrap();
    let before = std::fs::read(&db).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(snapshot.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root may write anywhere, so as root the export runs as `nobody`, for whom the snapshot is
    // truly read-only (without that, SQLite would quietly create its `-shm` beside the file).
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    let out = if as_root {
        Command::new("runuser")
            .args([
                "-u",
                "nobody",
                "--",
                env!("CARGO_BIN_EXE_hookbox"),
                "export",
            ])
            .current_dir(snapshot.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", "sqlite:///snap.db")
            .output()
            .expect("runuser (util-linux) runs the export as nobody")
    } else {
        Launch::new(snapshot.path())
            .env("DATABASE_URL", "sqlite:///snap.db")
            .run_args(&["export"], b"")
    };
    std::fs::set_permissions(snapshot.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&expected.stdout));
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "export changed the file"
    );
    assert_eq!(
        entries(snapshot.path()),
        ["snap.db"],
        "export created files"
    );
}

#[test]
fn export_into_a_closed_pipe_exits_0_quietly() {
    let dir = TempDir::new();
    // Far more than a pipe buffer (64 KiB), so the write after the reader left must fail.
    let launch = stocked(&dir, 5000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
        .arg("export")
        .current_dir(dir.path())
        .env_clear()
        .envs(&launch.env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -c 100`: read a little, then go away.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "quietly: {}", text(&out.stderr));
}

#[test]
fn export_to_a_full_device_is_an_output_error() {
    let dir = TempDir::new();
    let launch = stocked(&dir, 2000);
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let out = Command::new(env!("CARGO_BIN_EXE_hookbox"))
        .arg("export")
        .current_dir(dir.path())
        .env_clear()
        .envs(&launch.env)
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("writing stdout"), "{stderr}");
    assert!(!stderr.contains("store"), "not the store's fault: {stderr}");
}

#[test]
fn export_of_a_file_that_is_not_a_hookbox_database_changes_nothing() {
    let dir = TempDir::new();
    for (name, contents) in [("empty.db", &b""[..]), ("notes.db", b"just some text\n")] {
        std::fs::write(dir.path().join(name), contents).unwrap();
        let out = Launch::new(dir.path())
            .env("DATABASE_URL", name)
            .run_args(&["export"], b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        assert!(stderr.contains("not a"), "{name}: {stderr}");
        assert_eq!(
            std::fs::read(dir.path().join(name)).unwrap(),
            contents,
            "{name}"
        );
    }
}
