//! The structure rules of `docs/architecture.md`, checked on the sources:
//! - the top-level modules of `src/` (`crate::X`) import one another without a cycle;
//! - only the adapters that speak HTTP (`http`, `web`) name `axum`;
//! - `render` (the compte rendu as documents) imports nothing of the crate but `domain`;
//! - no source file is longer than 700 lines.
//!
//! A module's imports are read from its files' text: every `crate::name` path, including the
//! names of a `use crate::{a, b::c}` group. Comments are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Adapters allowed to know the web framework.
const HTTP_ADAPTERS: &[&str] = &["http", "web"];
/// Longest source file, in lines.
const MAX_LINES: usize = 700;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source files under `src/`, with the top-level module each belongs to (`None` for the
/// crate roots `lib.rs` and `main.rs`).
fn files() -> Vec<(Option<String>, PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("under src");
            let first = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or_default()
                .to_owned();
            let module = match first.strip_suffix(".rs") {
                Some("lib" | "main") => None,
                Some(name) => Some(name.to_owned()),
                None => Some(first),
            };
            let text = std::fs::read_to_string(&path).expect("readable source");
            (module, path, text)
        })
        .collect()
}

/// The text without `//` comments (doc comments included), so that prose never counts as an
/// import.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module names a piece of code reaches through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a, b::c, d::{e, f}}`: the first segment of each top-level item.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[i..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_lowercase() || c == '_') => {
                        let name: String = group[i..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(name);
                        item_start = false;
                    }
                    c if !c.is_whitespace() => item_start = false,
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out.remove("self");
    out
}

/// A cycle of the graph, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, text) in files() {
        let Some(module) = module else { continue };
        let deps = imports(&code(&text));
        let entry = graph.entry(module.clone()).or_default();
        entry.extend(deps.into_iter().filter(|d| *d != module));
    }
    graph
}

#[test]
fn top_level_modules_form_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 5, "the module graph was not read: {graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level modules: {}\n(see docs/architecture.md: adapters -> services -> domain and storage)",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn services_sit_below_the_adapters() {
    let graph = graph();
    for lower in [
        "services", "storage", "domain", "audit", "auth", "crypto", "config", "render",
    ] {
        let deps = graph.get(lower).cloned().unwrap_or_default();
        for adapter in ["http", "web", "cli", "app"] {
            assert!(
                !deps.contains(adapter),
                "`{lower}` imports the adapter `{adapter}`"
            );
        }
    }
    let domain = graph.get("domain").cloned().unwrap_or_default();
    for io in ["storage", "services", "error", "auth", "config"] {
        assert!(!domain.contains(io), "the pure domain imports `{io}`");
    }
}

#[test]
fn render_knows_only_the_domain() {
    // The compte rendu's documents are pure: a `Minutes` in, bytes out (docs/architecture.md).
    let graph = graph();
    let render = graph.get("render").cloned().unwrap_or_default();
    let allowed = BTreeSet::from(["domain".to_owned()]);
    assert!(
        render.is_subset(&allowed),
        "`render` imports more than the domain: {render:?}"
    );
}

#[test]
fn only_the_http_adapters_know_axum() {
    let mut offenders = Vec::new();
    for (module, path, text) in files() {
        let Some(module) = module else { continue };
        if HTTP_ADAPTERS.contains(&module.as_str()) {
            continue;
        }
        if code(&text).contains("axum") {
            offenders.push(path.display().to_string());
        }
    }
    assert!(
        offenders.is_empty(),
        "axum named outside the HTTP adapters: {offenders:?}"
    );
}

#[test]
fn no_source_file_is_too_long() {
    let long: Vec<String> = files()
        .into_iter()
        .filter_map(|(_, path, text)| {
            let lines = text.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "source files over {MAX_LINES} lines (split them by responsibility): {long:?}"
    );
}

#[test]
fn the_import_reader_reads_groups_and_ignores_comments() {
    let text = "use crate::{a::B, c, d::{e, f}};\n// crate::g\nlet x = crate::h::i();";
    let found = imports(&code(text));
    let expected: BTreeSet<String> = ["a", "c", "d", "h"].iter().map(|s| s.to_string()).collect();
    assert_eq!(found, expected);
    let mut graph = BTreeMap::new();
    graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    graph.insert("b".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
    graph.remove("b");
    assert_eq!(find_cycle(&graph), None);
}
