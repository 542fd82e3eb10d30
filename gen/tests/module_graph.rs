//! The modules of `gen/src` use each other in one direction: no file uses a module that uses it back, directly
//! or through others. A circle hides which part is the foundation and which is built on it (ARCHITECTURE.md: "one
//! module per box, data passed forward, no step reaching back"), and a glob import (`use super::*`) hides one, so
//! this test reads the source as text rather than trusting the compiler, which accepts circles.
//!
//! Granularity: one node per file (a `mod.rs` is its folder's module). An edge A → B is any path in A's code that
//! names an item of B: `use` declarations (braces and globs expanded) and paths written inline
//! (`crate::deploy::machines(…)`, `super::path::Step`, `check::check(…)` for a child module). A parent declaring
//! its children (`mod check;`) is not a use; the crate roots (`lib.rs`, `main.rs`) and `#[cfg(test)]` modules
//! are left out, as are comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its crate (`true` for the binary: `main.rs` and `cli/`) and its path in that crate.
type Module = (bool, Vec<String>);

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file is, from its path relative to `src/`.
fn module_of(relative: &Path) -> Module {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let bin = parts[0] == "main" || parts[0] == "cli";
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    (bin, parts)
}

/// The code of a file without comments, string literals and `#[cfg(test)]` modules (which come last).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod ") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let mut kept = String::new();
        let mut in_string = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if in_string => {
                    chars.next();
                }
                '"' => in_string = !in_string,
                '/' if !in_string && chars.peek() == Some(&'/') => break,
                c if !in_string => kept.push(c),
                _ => {}
            }
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The paths a `use` tree names, braces expanded (`a::{b, c::{d, self}}` → `a::b`, `a::c::d`, `a::c`).
fn expand(tree: &str) -> Vec<Vec<String>> {
    // Aliases (`x as y`) go first: the name used is not the module's.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let mut unaliased = String::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "as" && i + 1 < words.len() {
            let rest = words[i + 1].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            unaliased.push_str(rest);
            i += 2;
        } else {
            unaliased.push_str(words[i]);
            i += 1;
        }
    }
    let tree = unaliased;
    let mut out = Vec::new();
    expand_into(&[], &tree, &mut out);
    out
}

fn expand_into(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    match tree.find('{') {
        None => {
            let mut path = prefix.to_vec();
            path.extend(
                tree.split("::")
                    .filter(|s| !s.is_empty() && *s != "self")
                    .map(str::to_owned),
            );
            out.push(path);
        }
        Some(open) => {
            let mut path = prefix.to_vec();
            path.extend(
                tree[..open]
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            );
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        expand_into(&path, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            if start < inner.len() {
                expand_into(&path, &inner[start..], out);
            }
        }
    }
}

/// The modules of both crates, and the edges between them with the path that makes each.
fn graph(src: &Path) -> BTreeMap<Module, BTreeMap<Module, String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<Module, PathBuf> = files
        .iter()
        .map(|f| (module_of(f.strip_prefix(src).unwrap()), f.clone()))
        .collect();
    let ident = |s: &str| s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let mut edges: BTreeMap<Module, BTreeMap<Module, String>> = BTreeMap::new();
    // What each module imports with a glob (`use x::*`): a glob of a module reaches what it imports so.
    let mut globs: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, file) in &modules {
        let (bin, here) = module;
        if here.is_empty() {
            continue;
        }
        let text = code(&std::fs::read_to_string(file).unwrap());
        let children: BTreeSet<String> = text
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let l = l
                    .strip_prefix("pub(crate) ")
                    .or(l.strip_prefix("pub "))
                    .unwrap_or(l);
                l.strip_prefix("mod ")?.strip_suffix(';').map(str::to_owned)
            })
            .collect();
        // Paths in `use` declarations, and paths written inline.
        let mut paths: Vec<Vec<String>> = Vec::new();
        for statement in text.split(';') {
            let s = statement.trim_start();
            let s = s
                .strip_prefix("pub(crate) ")
                .or(s.strip_prefix("pub(super) "))
                .or(s.strip_prefix("pub "))
                .unwrap_or(s);
            if let Some(tree) = s.strip_prefix("use ") {
                paths.extend(expand(tree));
            }
        }
        let bytes: Vec<char> = text.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            let starts_word = i == 0
                || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
            if starts_word && (bytes[i].is_alphabetic() || bytes[i] == '_') {
                let mut j = i;
                while j < bytes.len()
                    && (bytes[j].is_alphanumeric() || bytes[j] == '_' || bytes[j] == ':')
                {
                    j += 1;
                }
                let word: String = bytes[i..j].iter().collect();
                let path: Vec<String> = word.split("::").map(str::to_owned).collect();
                if path.len() > 1 && path.iter().all(|s| !s.is_empty() && ident(s)) {
                    paths.push(path);
                }
                i = j;
            } else {
                i += 1;
            }
        }
        for path in paths {
            let Some(first) = path.first() else { continue };
            let (crate_bin, mut base, rest) = match first.as_str() {
                "crate" => (*bin, Vec::new(), &path[1..]),
                "fedigen" if *bin => (false, Vec::new(), &path[1..]),
                "self" => (*bin, here.clone(), &path[1..]),
                "super" => {
                    let mut base = here.clone();
                    let mut rest = &path[..];
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                    (*bin, base, rest)
                }
                child if children.contains(child) => (*bin, here.clone(), &path[..]),
                _ => continue,
            };
            // `super::*` or `use super::{…}` names the module itself; then the longest path to a module file.
            let mut target =
                Some(base.clone()).filter(|b| modules.contains_key(&(crate_bin, b.clone())));
            for segment in rest {
                base.push(segment.clone());
                if modules.contains_key(&(crate_bin, base.clone())) {
                    target = Some(base.clone());
                } else {
                    break;
                }
            }
            if let Some(target) = target.as_ref().filter(|t| *t != here)
                && path.last().is_some_and(|s| s == "*")
            {
                globs
                    .entry(module.clone())
                    .or_default()
                    .insert((crate_bin, target.clone()));
            }
            // A parent (`mod.rs`) fronting its own folder (declaring, re-exporting, calling its parts) is not a
            // use that can make a circle: its parts use it, not the other way round.
            if let Some(target) =
                target.filter(|t| t != here && !t.is_empty() && !t.starts_with(here))
            {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry((crate_bin, target))
                    .or_insert_with(|| path.join("::"));
            }
        }
    }
    // A glob of a module that itself imports modules with globs uses those too (`use super::*` in a part whose
    // parent has `use sibling::*` uses the sibling): globs would otherwise hide the circle.
    for (module, direct) in &globs {
        let mut reached = BTreeSet::new();
        let mut stack: Vec<Module> = direct.iter().cloned().collect();
        while let Some(m) = stack.pop() {
            for next in globs.get(&m).into_iter().flatten() {
                if reached.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        for target in reached {
            if target != *module && !target.1.starts_with(&module.1) {
                edges
                    .entry(module.clone())
                    .or_default()
                    .entry(target.clone())
                    .or_insert_with(|| format!("a glob import reaching {}", name(&target)));
            }
        }
    }
    edges
}

fn name(module: &Module) -> String {
    let crate_name = if module.0 { "main" } else { "lib" };
    format!("{crate_name}:{}", module.1.join("::"))
}

/// Circles: every pair of modules that use each other, with the path that makes each edge.
fn circles(edges: &BTreeMap<Module, BTreeMap<Module, String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (a, targets) in edges {
        for (b, via) in targets {
            if a < b
                && let Some(back) = edges.get(b).and_then(|t| t.get(a))
            {
                out.push(format!(
                    "{} → {} (`{via}`) and {} → {} (`{back}`)",
                    name(a),
                    name(b),
                    name(b),
                    name(a)
                ));
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_module_that_uses_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = graph(&src);
    assert!(
        edges.len() > 20,
        "the reader found too few modules that use others: {}",
        edges.len()
    );
    let found = circles(&edges);
    assert!(
        found.is_empty(),
        "{} circle(s) between modules; move what both sides need into a module of its own:\n{}",
        found.len(),
        found.join("\n\n")
    );
}

#[test]
fn the_reader_sees_circles_and_glob_imports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod c;\npub mod d;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("a/mod.rs"),
        "mod x;\nmod y;\nuse x::*;\nuse y::*;\n",
    )
    .unwrap();
    std::fs::write(src.join("a/x.rs"), "use super::*;\n// crate::c::f()\n").unwrap();
    std::fs::write(
        src.join("a/y.rs"),
        "pub fn f() { crate::b::g(\"crate::c\") } fn k() { crate::d::e() }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("b.rs"),
        "use crate::{c::{self, h as k}, a as assets};\n",
    )
    .unwrap();
    std::fs::write(src.join("d.rs"), "use crate::a::y::f;\n").unwrap();
    std::fs::write(
        src.join("c.rs"),
        "pub fn h() {}\n#[cfg(test)]\nmod tests { use crate::b; }\n",
    )
    .unwrap();
    let edges = graph(src);
    let lib = |p: &str| (false, p.split("::").map(str::to_owned).collect::<Vec<_>>());
    let targets = |m: &str| -> Vec<Module> {
        edges
            .get(&lib(m))
            .map(|e| e.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert!(
        targets("a").is_empty(),
        "a parent fronting its parts is not a use"
    );
    assert_eq!(
        targets("a::x"),
        [lib("a"), lib("a::y")],
        "a glob names its module, and what that module imports with globs"
    );
    assert_eq!(
        targets("a::y"),
        [lib("b"), lib("d")],
        "strings and comments are not code"
    );
    assert_eq!(targets("b"), [lib("a"), lib("c")]);
    assert!(targets("c").is_empty(), "test modules are left out");
    let found = circles(&edges);
    assert_eq!(
        found,
        ["lib:a::y → lib:d (`crate::d::e`) and lib:d → lib:a::y (`crate::a::y::f`)"]
    );
    // x and y see each other only through their parent's globs (y uses nothing of x here: a reader of text
    // cannot tell, so a glob counts as a use of everything it reaches).
    std::fs::write(src.join("a/y.rs"), "use super::*;\n").unwrap();
    let found = circles(&graph(src));
    assert_eq!(
        found,
        [
            "lib:a::x → lib:a::y (`a glob import reaching lib:a::y`) and lib:a::y → lib:a::x (`a glob import reaching lib:a::x`)"
        ]
    );
}
