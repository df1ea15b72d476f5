//! The house keeps its shape: rooms a reader can hold (≤ 500 lines per source file, inline tests
//! included) and imports that go one way (no circle between the crate's top-level modules, read
//! off their `crate::…` paths, test modules aside).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use crate::support::rust_files;

const MAX_LINES: usize = 500;

fn sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect()
}

#[test]
fn no_source_file_is_over_500_lines() {
    let big: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(name, text)| format!("{name}: {} lines", text.lines().count()))
        .collect();
    assert!(big.is_empty(), "split these rooms: {big:?}");
}

/// Top-level module → the top-level modules its non-test code names as `crate::…`.
fn imports(files: &[(String, String)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, text) in files {
        let module = name.split('/').next().unwrap().trim_end_matches(".rs");
        if name.ends_with("tests.rs") || ["main", "lib"].contains(&module) {
            continue;
        }
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let edges = graph.entry(module.to_owned()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let used: String = code[at + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !used.is_empty() && used != module {
                edges.insert(used);
            }
        }
    }
    graph
}

/// A path from `to` back to `from`, if there is one.
fn path_back(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    to: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![vec![to.to_owned()]];
    let mut seen = BTreeSet::new();
    while let Some(path) = stack.pop() {
        let last = path.last().unwrap();
        if last == from {
            return Some(path);
        }
        if !seen.insert(last.clone()) {
            continue;
        }
        for next in graph.get(last).into_iter().flatten() {
            let mut longer = path.clone();
            longer.push(next.clone());
            stack.push(longer);
        }
    }
    None
}

fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (module, uses) in graph {
        for used in uses {
            if let Some(back) = path_back(graph, module, used) {
                found.push(format!("{module} → {}", back.join(" → ")));
            }
        }
    }
    found
}

#[test]
fn the_modules_import_each_other_one_way() {
    let graph = imports(&sources());
    assert!(graph.contains_key("store") && graph.contains_key("config"));
    let found = circles(&graph);
    assert!(found.is_empty(), "import circles: {found:#?}");
}

#[test]
fn a_circle_is_found() {
    let files = [
        ("config.rs", "use crate::store::Durability;"),
        ("store/mod.rs", "use crate::config::Config;"),
        ("message.rs", "use crate::timestamp;"),
    ]
    .map(|(name, text)| (name.to_owned(), text.to_owned()));
    let found = circles(&imports(&files));
    assert_eq!(found, ["config → store → config", "store → config → store"]);
}
