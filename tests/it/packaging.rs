//! The image and the compose file keep up with the code: every configuration variable reaches
//! the container, every file the build reads is in the build context, and the Dockerfile pulls
//! nothing a mirror-only builder cannot reach.

use std::fs;
use std::path::PathBuf;

use crate::support::rust_files;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The `"HOOKBOX_…"` names the configuration reads (string literals in `src/config*`).
fn config_variables() -> Vec<String> {
    let mut files = vec![root().join("src/config.rs")];
    rust_files(&root().join("src/config"), &mut files);
    let mut names: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = fs::read_to_string(file).unwrap();
            text.split('"')
                .skip(1)
                .step_by(2)
                .filter(|literal| {
                    literal.starts_with("HOOKBOX_")
                        && literal.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

#[test]
fn every_variable_the_config_reads_reaches_the_container_and_the_readme() {
    let names = config_variables();
    assert!(
        names.len() >= 25,
        "found too few variables to be real: {names:?}"
    );
    let compose = read("docker-compose.yml");
    let readme = read("README.md");
    let mut missing = Vec::new();
    for name in &names {
        if !compose.contains(&format!("{name}: ${{{name}")) {
            missing.push(format!("{name} (docker-compose.yml)"));
        }
        if !readme.contains(&format!("`{name}`")) {
            missing.push(format!("{name} (README.md)"));
        }
    }
    assert!(
        missing.is_empty(),
        "not passed through or not documented: {missing:?}"
    );
}

#[test]
fn every_file_the_build_includes_is_copied_into_the_image() {
    let dockerfile = read("Dockerfile");
    let copied: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("COPY "))
        .filter(|line| !line.starts_with("--from"))
        .flat_map(|line| {
            let mut parts: Vec<&str> = line.split_whitespace().collect();
            parts.pop(); // the destination
            parts
        })
        .map(|source| source.trim_start_matches("./").trim_end_matches('/'))
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut missing = Vec::new();
    let mut included = 0;
    for file in files {
        let text = fs::read_to_string(&file).unwrap();
        for piece in text
            .split("include_str!(\"")
            .skip(1)
            .chain(text.split("include_bytes!(\"").skip(1))
        {
            let relative = &piece[..piece.find('"').unwrap()];
            let target = file.parent().unwrap().join(relative);
            let target = fs::canonicalize(&target)
                .unwrap_or_else(|error| panic!("{}: {relative}: {error}", file.display()));
            let inside = target
                .strip_prefix(fs::canonicalize(root()).unwrap())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            included += 1;
            let covered = copied
                .iter()
                .any(|source| inside == *source || inside.starts_with(&format!("{source}/")));
            if !covered {
                missing.push(inside);
            }
        }
    }
    assert!(included > 0, "no include_str! found: the scan is broken");
    assert!(
        missing.is_empty(),
        "built into the binary but not copied by the Dockerfile: {missing:?}"
    );
    assert!(
        copied.contains(&"src") && copied.contains(&"Cargo.lock"),
        "{copied:?}"
    );
}

#[test]
fn the_dockerfile_names_no_frontend_to_pull() {
    let dockerfile = read("Dockerfile");
    assert!(
        !dockerfile
            .lines()
            .any(|line| line.trim_start().starts_with("# syntax")),
        "a `# syntax=` line makes every BuildKit build pull its frontend from Docker Hub"
    );
}
