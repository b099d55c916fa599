//! The repository stands alone: whatever its tracked files refer to lies inside it, so a fresh
//! clone is complete (links, `../` paths in code and docs, names of documents).

use std::{
    collections::BTreeSet,
    path::{Component, Path, PathBuf},
    process::Command,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lies in the repository")
        .to_owned()
}

/// Every tracked file, relative to the root.
fn tracked() -> Vec<PathBuf> {
    let output = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(root())
        .output()
        .expect("running git ls-files");
    assert!(output.status.success(), "git ls-files failed");
    output
        .stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .collect()
}

/// `path` with `.` and `..` resolved without touching the file system; `None` when it climbs
/// above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part),
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

/// The relative paths starting with `../` in `text`.
fn parent_paths(text: &str) -> Vec<&str> {
    let is_path = |c: char| c.is_ascii_alphanumeric() || "._-/".contains(c);
    let mut found = Vec::new();
    for (at, _) in text.match_indices("../") {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c == '.' || c == '/' || c.is_ascii_alphanumeric()) {
            continue; // the middle of a longer path, found from its start
        }
        let rest = &text[at..];
        let end = rest.find(|c: char| !is_path(c)).unwrap_or(rest.len());
        found.push(rest[..end].trim_end_matches('.'));
    }
    found
}

/// The targets of Markdown links, `[text](target)`, that are neither URLs nor anchors.
fn link_targets(text: &str) -> Vec<&str> {
    text.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &text[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split('#').next().unwrap_or_default();
            (!target.is_empty() && !target.contains("://") && !target.starts_with("mailto:"))
                .then_some(target)
        })
        .collect()
}

/// Names of Markdown documents mentioned in `text` (`API.md`, `docs/DESIGN.md`), URLs aside.
fn document_names(text: &str) -> Vec<&str> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || "_-/.".contains(c);
    let mut found = Vec::new();
    for (at, _) in text.match_indices(".md") {
        if text[at + 3..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
            continue;
        }
        let start = text[..at].rfind(|c: char| !is_name(c)).map_or(0, |i| i + 1);
        let mut name = &text[start..at + 3];
        // `$ROOT/BENCHMARKS.md`: the variable stands for a folder of the repository.
        if text[..start].ends_with(['$', '}']) {
            name = name.split_once('/').map_or(name, |(_, rest)| rest);
        }
        let word_start = text[..start]
            .rfind(char::is_whitespace)
            .map_or(0, |i| i + 1);
        let in_url = text[word_start..at].contains("://");
        if name.len() > 3 && !in_url {
            found.push(name);
        }
    }
    found
}

#[test]
fn no_tracked_file_refers_to_a_path_outside_the_repository() {
    let files = tracked();
    let known: BTreeSet<PathBuf> = files
        .iter()
        .flat_map(|file| file.ancestors().map(Path::to_path_buf))
        .collect();
    let mut problems = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(root().join(file)) else {
            continue; // not text
        };
        let dir = file.parent().unwrap_or(Path::new(""));
        for path in parent_paths(&text) {
            if normalize(&dir.join(path)).is_none() {
                problems.push(format!(
                    "{}: {path} lies outside the repository",
                    file.display()
                ));
            }
        }
        if file.extension().is_some_and(|e| e == "md") {
            for target in link_targets(&text) {
                match normalize(&dir.join(target)) {
                    Some(path) if known.contains(&path) => {}
                    _ => problems.push(format!(
                        "{}: link to {target}, not in the repository",
                        file.display()
                    )),
                }
            }
        }
        for name in document_names(&text) {
            let name = name.trim_start_matches("./");
            let exists = files.iter().any(|f| f.ends_with(name))
                || normalize(&dir.join(name)).is_some_and(|p| known.contains(&p));
            if !exists {
                problems.push(format!(
                    "{}: names {name}, which the repository does not have",
                    file.display()
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "references outside the repository:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_reference_finders_find_what_they_should() {
    // Built, not written out: this file is checked too.
    let md = |name: &str| format!("{name}.md");
    let up = |name: &str| format!("../{name}");
    let text = format!("see {}. and a/{}", up(&md("shared/API")), up("b"));
    assert_eq!(parent_paths(&text), [up(&md("shared/API"))]);
    let links = format!(
        "[a]({}#top) [b](https://x.org/{}) [c](#here)",
        up(&md("x")),
        md("y")
    );
    assert_eq!(link_targets(&links), [up(&md("x"))]);
    let names = format!(
        "{}, `{}` and https://x.org/{}, not a.mdx, $ROOT/{}",
        md("API"),
        md("shared/DESIGN"),
        md("y"),
        md("BENCH")
    );
    assert_eq!(
        document_names(&names),
        [md("API"), md("shared/DESIGN"), md("BENCH")]
    );
    assert_eq!(normalize(Path::new("a/../../b")), None);
    assert_eq!(normalize(Path::new("a/b/../c")), Some(PathBuf::from("a/c")));
}
