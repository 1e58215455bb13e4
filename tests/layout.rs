//! The code's layout rules, checked on every test run: no two source files import each other,
//! directly or through others (read from each file's `use` lines), and no source file is over
//! 600 lines (its unit tests aside). A file that grows past that is a room that wants splitting.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines of a source file, its `#[cfg(test)] mod tests` aside.
const MAX_LINES: usize = 600;

/// The crates checked: (source directory, root file).
const CRATES: &[(&str, &str)] = &[
    ("crdt/src", "lib.rs"),
    ("server/src", "lib.rs"),
    ("backends/sled/src", "lib.rs"),
    ("backends/postgres/src", "lib.rs"),
    ("backends/redis/src", "lib.rs"),
    ("src", "main.rs"),
    ("src/bin/weft-load", "main.rs"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file of a crate, by module path (`["actor", "delivery"]`).
fn modules(dir: &Path, root_file: &str) -> BTreeMap<Vec<String>, PathBuf> {
    let mut found = BTreeMap::new();
    found.insert(Vec::new(), dir.join(root_file));
    let mut stack = vec![(dir.to_path_buf(), Vec::<String>::new())];
    while let Some((at, path)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if file.is_dir() {
                // The binary's own bin/ folder is a crate of its own.
                if !(dir.ends_with("src") && name == "bin" && root_file == "main.rs") {
                    let mut sub = path.clone();
                    sub.push(name);
                    stack.push((file, sub));
                }
            } else if let Some(stem) = name.strip_suffix(".rs") {
                if path.is_empty() && (stem == "lib" || stem == "main") {
                    continue;
                }
                let mut module = path.clone();
                if stem != "mod" {
                    module.push(stem.to_string());
                }
                found.insert(module, file);
            }
        }
    }
    found
}

/// The `use` statements of a source file, each as the full paths it names (braces expanded).
fn use_paths(source: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut statement = String::new();
    let mut inside = false;
    for line in source.lines() {
        let trimmed = line.trim();
        if !inside {
            let rest = trimmed
                .strip_prefix("pub(crate) ")
                .or_else(|| trimmed.strip_prefix("pub(super) "))
                .or_else(|| trimmed.strip_prefix("pub "))
                .unwrap_or(trimmed);
            if let Some(body) = rest.strip_prefix("use ") {
                inside = true;
                statement.clear();
                statement.push_str(body);
            } else {
                continue;
            }
        } else {
            statement.push(' ');
            statement.push_str(trimmed);
        }
        if statement.trim_end().ends_with(';') {
            inside = false;
            let body = statement.trim_end().trim_end_matches(';');
            // `X as Y` names X; whitespace means nothing else in a use tree.
            let body = body.replace(" as ", "@").replace(char::is_whitespace, "");
            expand(&body, &mut Vec::new(), &mut paths);
        }
    }
    paths
}

/// Expands `a::{b::c, d}` into `[a, b, c]`, `[a, d]`.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let Some(open) = tree.find('{') else {
        let mut path = prefix.clone();
        let named = tree.split('@').next().unwrap_or(tree);
        path.extend(
            named
                .split("::")
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
        out.push(path);
        return;
    };
    let head: Vec<String> = tree[..open]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    let before = prefix.len();
    prefix.extend(head);
    for part in parts.into_iter().filter(|p| !p.is_empty()) {
        expand(part, prefix, out);
    }
    prefix.truncate(before);
}

/// The file a `use` path lands in, if it is inside the crate.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<PathBuf> {
    let (mut base, rest): (Vec<String>, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (from.to_vec(), &path[1..]),
        Some("super") => {
            let mut base = from.to_vec();
            let mut rest = path;
            // One level up from the module, whether it is `a/b.rs` or `a/b/mod.rs`.
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None, // another crate
    };
    // The deepest module named by the path.
    let mut target = modules.get(&base).cloned();
    for segment in rest {
        base.push(segment.clone());
        match modules.get(&base) {
            Some(file) => target = Some(file.clone()),
            None => break,
        }
    }
    target
}

/// Lines of a file before its unit tests.
fn code_lines(source: &str) -> usize {
    let end = source
        .find("#[cfg(test)]\nmod tests")
        .unwrap_or(source.len());
    source[..end].lines().count()
}

#[test]
fn no_import_cycles_and_no_oversized_files() {
    let mut problems = Vec::new();
    for (dir, root_file) in CRATES {
        let dir = root().join(dir);
        let modules = modules(&dir, root_file);
        let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
        for (module, file) in &modules {
            let source = std::fs::read_to_string(file).expect("read a source file");
            let lines = code_lines(&source);
            if lines > MAX_LINES {
                problems.push(format!(
                    "{} has {lines} lines (over {MAX_LINES})",
                    file.display()
                ));
            }
            for path in use_paths(&source) {
                if let Some(target) = resolve(module, &path, &modules) {
                    if &target != file {
                        edges.entry(file.clone()).or_default().insert(target);
                    }
                }
            }
        }
        // A cycle is a path from a file back to itself.
        for start in edges.keys() {
            let mut seen = BTreeSet::new();
            let mut stack: Vec<(PathBuf, Vec<PathBuf>)> =
                vec![(start.clone(), vec![start.clone()])];
            while let Some((at, trail)) = stack.pop() {
                for next in edges.get(&at).into_iter().flatten() {
                    if next == start {
                        let names: Vec<String> = trail
                            .iter()
                            .chain([next])
                            .map(|p| p.strip_prefix(root()).unwrap_or(p).display().to_string())
                            .collect();
                        problems.push(format!("import cycle: {}", names.join(" -> ")));
                    } else if seen.insert(next.clone()) {
                        let mut trail = trail.clone();
                        trail.push(next.clone());
                        stack.push((next.clone(), trail));
                    }
                }
            }
        }
    }
    problems.sort();
    problems.dedup();
    assert!(
        problems.is_empty(),
        "layout rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn use_lines_are_read_as_paths() {
    let paths = use_paths(
        "use crate::a::{b, c::{D, E}};\npub(crate) use super::x::Y as Z;\nuse std::fmt;\n",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        vec![
            "crate::a::b",
            "crate::a::c::D",
            "crate::a::c::E",
            "super::x::Y",
            "std::fmt"
        ]
    );
}
