//! The command line as operators know it from Unix tools: help and the version on stdout with
//! exit 0 (needing no configuration at all), a wrong argument exit 2 with one line on stderr,
//! and `healthcheck` that takes no arguments.

use super::harness::*;
use crate::support::TempDir;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version_print_to_stdout_and_exit_0_without_any_configuration() {
    let dir = TempDir::new();
    // A configuration that could not start: help must not need it.
    let launch = Launch::new(dir.path()).env("DATABASE_URL", "file:x.db");
    for (args, wanted) in [
        (&["--help"][..], "hookbox export"),
        (&["-h"], "hookbox export"),
        (&["help"], "hookbox export"),
        (&["help", "import"], "Usage: hookbox import"),
        (&["export", "--help"], "Usage: hookbox export"),
        (
            &["export", "--since", "2025-01-15T10:00:00Z", "-h"],
            "Usage: hookbox export",
        ),
        (&["import", "--help"], "Usage: hookbox import"),
        (&["healthcheck", "--help"], "Usage: hookbox healthcheck"),
    ] {
        let out = launch.run_args(args, b"");
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(stdout.contains(wanted), "{args:?}: {stdout}");
        assert!(out.stderr.is_empty(), "{args:?}: {}", text(&out.stderr));
    }
    for args in [&["--version"][..], &["-V"]] {
        let out = launch.run_args(args, b"");
        assert_eq!(out.status.code(), Some(0));
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!("hookbox {} ", env!("CARGO_PKG_VERSION")))
                && stdout.contains("schema version"),
            "{stdout}"
        );
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "help and version touch no file"
    );
}

#[test]
fn a_wrong_argument_is_exit_2_with_one_line_on_stderr() {
    let dir = TempDir::new();
    let launch = Launch::new(dir.path());
    for args in [
        &["--frobnicate"][..],
        &["serve"],
        &["healthcheck", "extra"],
        &["healthcheck", "--port", "80"],
        &["export", "--nope"],
        &["export", "--since"],
        &["export", "--since", "2025-02-30T00:00:00Z"],
        &["export", "--since", "yesterday"],
        &["export", "--from", "919876543210"],
        &["export", "--from="],
        &["import", "a.ndjson", "b.ndjson"],
        &["import", "--fast"],
        &["help", "nothing"],
        &["--version", "--verbose"],
    ] {
        let out = launch.run_args(args, b"");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: a hint: {stderr}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "a wrong argument touches no file"
    );
}

#[test]
fn healthcheck_exits_0_on_a_ready_server_and_1_on_none() {
    let dir = TempDir::new();
    let launch = Launch::new(dir.path());
    let (proc, addr) = launch.start();
    let probe = launch.clone_with("PORT", &addr.port().to_string());
    let ready = probe.run_args(&["healthcheck"], b"");
    assert_eq!(ready.status.code(), Some(0), "{}", text(&ready.stderr));
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());

    let gone = probe.run_args(&["healthcheck"], b"");
    assert_eq!(gone.status.code(), Some(1));
    assert!(
        text(&gone.stderr).contains(&addr.port().to_string()),
        "{}",
        text(&gone.stderr)
    );
}
