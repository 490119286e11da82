//! The dependency direction written in `lib.rs`, checked on the source: every top-level
//! module that a module's code names (`crate::x`, `crate::{x, y}`, `super::...::x`) must
//! sit in a lower row of [`LAYERS`], and [`ONLY`] limits who may use some modules at all.
//! Test code (`#[cfg(test)]` items and files) is left out: a test may build its fixtures
//! with anything. A new top-level module fails the test until it has a row.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The rows of the layout in `lib.rs`, top first; a module may use the rows below its own.
const LAYERS: &[&[&str]] = &[
    &["demo", "export"],
    &["settings"],
    &["batch", "serve", "train", "backtest", "retention"],
    &["nightly_metrics"],
    &["alerts", "scores", "history", "report"],
    &["scoring"],
    &["model", "labels", "registry"],
    &["features"],
    &["churn"],
    &["data", "metrics", "synth", "config", "manifest"],
    &["time", "error", "fsutil", "logging"],
];

/// Modules that only the listed modules may use, whatever their rows (the binary and
/// tests aside).
const ONLY: &[(&str, &[&str])] = &[
    // `settings` builds the trainer's label windows; it is not serving code.
    ("labels", &["train", "backtest", "settings"]),
    // `settings` resolves `generate`'s options (the demo's sample goes through it).
    ("synth", &["settings"]),
];

/// Files of the crate root that are not modules of the layout.
const ROOT_FILES: [&str; 3] = ["lib.rs", "main.rs", "layering.rs"];

fn row(module: &str) -> Option<usize> {
    LAYERS.iter().position(|r| r.contains(&module))
}

/// One source file: its path below `src/` and its text.
struct Source {
    rel: PathBuf,
    text: String,
}

impl Source {
    /// The top-level module the file belongs to (`alerts` for `alerts/outbox.rs`).
    fn module(&self) -> String {
        let first = self.rel.components().next().expect("a path below src");
        let first = first.as_os_str().to_string_lossy();
        first.strip_suffix(".rs").unwrap_or(&first).to_string()
    }

    /// How many `super::` reach the crate root from the file's own module.
    fn depth(&self) -> usize {
        let n = self.rel.components().count();
        if self.rel.file_name().is_some_and(|f| f == "mod.rs") {
            n - 1
        } else {
            n
        }
    }

    /// The directory holding the files of the module's children.
    fn children_dir(&self) -> PathBuf {
        if self.rel.file_name().is_some_and(|f| f == "mod.rs") {
            self.rel
                .parent()
                .expect("mod.rs has a parent")
                .to_path_buf()
        } else {
            self.rel.with_extension("")
        }
    }
}

fn read_sources(dir: &Path, root: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            read_sources(&path, root, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rel = path.strip_prefix(root).expect("below src").to_path_buf();
            out.push(Source { rel, text });
        }
    }
}

/// The code of `text` without comment lines and without `#[cfg(test)]` items, and the
/// names of the child modules declared test-only (`#[cfg(test)] mod tests;`).
fn production_code(text: &str) -> (String, Vec<String>) {
    let mut code = String::new();
    let mut test_children = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t.starts_with("//") {
            continue;
        }
        if t != "#[cfg(test)]" {
            code.push_str(line);
            code.push('\n');
            continue;
        }
        // Skip the item the attribute applies to: up to its `;`, or its braces.
        let mut depth = 0i32;
        let mut opened = false;
        for item in lines.by_ref() {
            let t = item.trim();
            if t.starts_with("#[") || t.starts_with("//") {
                continue;
            }
            if !opened && t.ends_with(';') && !t.contains('{') {
                if let Some(name) = t
                    .trim_end_matches(';')
                    .split_whitespace()
                    .skip_while(|w| *w != "mod")
                    .nth(1)
                {
                    test_children.push(name.to_string());
                }
                break;
            }
            depth += item.matches('{').count() as i32 - item.matches('}').count() as i32;
            opened |= item.contains('{');
            if opened && depth <= 0 {
                break;
            }
        }
    }
    (code, test_children)
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segment of every `crate::` and root-reaching `super::` path in `code`.
fn roots(code: &str, depth: usize) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let supers = "super::".repeat(depth);
    for prefix in ["crate::".to_string(), supers] {
        if prefix.is_empty() {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find(&prefix) {
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            // `super::super::x` must not count as the shorter `super::x`.
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::b, c}`: the first segment of each top-level entry.
                let mut level = 0;
                let mut start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => level += 1,
                        '}' if level == 0 => break,
                        '}' => level -= 1,
                        ',' if level == 0 => start = true,
                        c if c.is_whitespace() => {}
                        _ if start => {
                            out.insert(ident_at(&group[i..]).to_string());
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident_at(rest).to_string());
            }
        }
    }
    out
}

/// Every edge of `sources` that the layout does not allow, as `file: from -> to (why)`,
/// plus the top-level modules the layout has no row for.
fn violations(sources: &[Source]) -> Vec<String> {
    let modules: BTreeSet<String> = sources
        .iter()
        .filter(|s| !ROOT_FILES.iter().any(|f| s.rel == Path::new(f)))
        .map(Source::module)
        .collect();
    let mut out: Vec<String> = modules
        .iter()
        .filter(|m| row(m).is_none())
        .map(|m| format!("module `{m}` has no row in LAYERS (and none in lib.rs's layout)"))
        .collect();
    let mut test_dirs: Vec<PathBuf> = Vec::new();
    let mut parsed = Vec::new();
    for s in sources {
        let (code, test_children) = production_code(&s.text);
        for c in test_children {
            test_dirs.push(s.children_dir().join(c));
        }
        parsed.push((s, code));
    }
    for (s, code) in parsed {
        let own = s.module();
        let test_only = test_dirs
            .iter()
            .any(|d| s.rel.starts_with(d) || s.rel == d.with_extension("rs"));
        if ROOT_FILES.iter().any(|f| s.rel == Path::new(f)) || test_only {
            continue;
        }
        for to in roots(&code, s.depth()) {
            if to == own || !modules.contains(&to) {
                continue;
            }
            let file = Path::new("src").join(&s.rel);
            let (from_row, to_row) = (row(&own), row(&to));
            if let (Some(f), Some(t)) = (from_row, to_row) {
                if t <= f {
                    out.push(format!(
                        "{}: {own} -> {to} points up or sideways (row {} -> row {})",
                        file.display(),
                        f + 1,
                        t + 1
                    ));
                }
            }
            if let Some((_, users)) = ONLY.iter().find(|(m, _)| *m == to) {
                if !users.contains(&own.as_str()) {
                    out.push(format!(
                        "{}: {own} -> {to}: only {users:?} may use `{to}`",
                        file.display()
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn every_module_uses_only_modules_below_its_row() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    read_sources(&src, &src, &mut sources);
    assert!(sources.len() > 50, "read {} files", sources.len());
    let bad = violations(&sources);
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
    for r in LAYERS.iter().flat_map(|r| r.iter()) {
        assert!(
            sources.iter().any(|s| s.module() == *r),
            "LAYERS names `{r}`, which is not a module"
        );
    }
}

#[test]
fn an_edge_pointing_up_names_the_file_and_the_edge() {
    let file = |rel: &str, text: &str| Source {
        rel: rel.into(),
        text: text.into(),
    };
    let sources = [
        file(
            "scoring/mod.rs",
            "use crate::{features::FeatureSpec, model};\n\
             // use crate::batch;\n\
             #[cfg(test)]\nmod tests {\n    use crate::batch::run;\n}\n\
             #[cfg(test)]\nmod fixtures;\n",
        ),
        file("scoring/fixtures.rs", "use crate::serve::app;\n"),
        file(
            "scoring/rules.rs",
            "fn f() { let _ = crate::{alerts::Tier, time::DAY}; }\n",
        ),
        file("features/mod.rs", "use super::scoring::Scorer;\n"),
        file("serve/mod.rs", "use crate::labels::label;\n"),
        file("alerts/mod.rs", ""),
        file("batch.rs", ""),
        file("labels.rs", ""),
        file("model/mod.rs", ""),
        file("time.rs", ""),
    ];
    let bad = violations(&sources);
    assert_eq!(
        bad,
        [
            "src/scoring/rules.rs: scoring -> alerts points up or sideways (row 6 -> row 5)",
            "src/features/mod.rs: features -> scoring points up or sideways (row 8 -> row 6)",
            "src/serve/mod.rs: serve -> labels: only [\"train\", \"backtest\", \"settings\"] may use `labels`",
        ]
    );
}
