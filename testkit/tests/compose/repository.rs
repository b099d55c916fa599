//! What the rest of the repository expects of the deployment, read from its files: the variables
//! the services read, the Nginx template's placeholders, the nats configuration, the Dockerfile.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

use crate::model::{read, root};

/// The environment variables read by the Rust files under `dir`, each with a file that reads it:
/// the literal names passed to `var(`, `var_os(`, `millis(` and `nonzero_millis(`
/// (`std::env::var("X")`, kit's `var("X", default)`), and RUST_LOG where tracing's `EnvFilter::*from_default_env` is called.
/// Test modules are left out.
pub fn variables_read_under(dir: &Path) -> BTreeMap<String, String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = BTreeMap::new();
    let mut paths = vec![dir.to_path_buf()];
    while let Some(path) = paths.pop() {
        if path.is_dir() {
            let entries = fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            paths.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let file = path
            .strip_prefix(root())
            .unwrap_or(&path)
            .display()
            .to_string();
        for call in ["var(", "var_os(", "millis(", "nonzero_millis("] {
            for (at, _) in code.match_indices(call) {
                if code[..at].ends_with(is_name) {
                    continue;
                }
                let Some(literal) = code[at + call.len()..].trim_start().strip_prefix('"') else {
                    continue;
                };
                let name = &literal[..literal.find('"').unwrap_or_default()];
                if name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                {
                    found.entry(name.to_owned()).or_insert_with(|| file.clone());
                }
            }
        }
        if code.contains("from_default_env") {
            found
                .entry("RUST_LOG".to_owned())
                .or_insert_with(|| file.clone());
        }
    }
    found
}

/// The `${NAME}` placeholders of a template, as the image's envsubst and ./stack fill them;
/// Nginx's own `$name` variables have no braces.
pub fn braced_placeholders(template: &str) -> BTreeSet<String> {
    let is_name = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    template
        .split("${")
        .skip(1)
        .filter_map(|s| Some(s.split_once('}')?.0.to_owned()))
        .filter(|name| is_name(name))
        .collect()
}

/// nats-server.conf and the files it includes, relative to nats/.
pub fn nats_config_files() -> Vec<String> {
    nats_config_files_from("nats-server.conf")
}

/// `start` (a file of nats/) and the files it includes, relative to nats/.
pub fn nats_config_files_from(start: &str) -> Vec<String> {
    let mut files = vec![start.to_owned()];
    let mut n = 0;
    while n < files.len() {
        for line in nats_code(&read(&format!("nats/{}", files[n]))).lines() {
            if let Some(included) = line.trim().strip_prefix("include ") {
                files.push(included.trim().trim_start_matches("./").to_owned());
            }
        }
        n += 1;
    }
    files
}

/// The nats configuration that starts at `start`, all its files, without comments and quoted
/// strings (`"$JS.API..."` is a subject, not a variable: nats-server does not look inside quotes).
fn nats_configuration(start: &str) -> String {
    let files = nats_config_files_from(start);
    files
        .iter()
        .map(|f| nats_code(&read(&format!("nats/{f}"))))
        .collect::<Vec<_>>()
        .join("\n")
}

fn nats_code(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let mut quote = None;
        for c in line.chars() {
            match (quote, c) {
                (None, '#') => break,
                (None, '/') if code.ends_with('/') => {
                    code.pop();
                    break;
                }
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) => code.push(c),
                _ => {}
            }
        }
        code.push('\n');
    }
    code
}

/// The `$NAME`s of the nats configuration that it does not define itself (`NAME: value` or
/// `NAME = value`): nats-server takes those from the environment.
pub fn nats_environment_variables() -> BTreeSet<String> {
    nats_environment_variables_of("nats-server.conf")
}

/// [`nats_environment_variables`] of the configuration that starts at `start` (a file of nats/).
pub fn nats_environment_variables_of(start: &str) -> BTreeSet<String> {
    let code = nats_configuration(start);
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let defined: BTreeSet<&str> = code
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (name, rest) = line.split_at(line.find(|c| !is_name(c))?);
            rest.trim_start().starts_with([':', '=']).then_some(name)
        })
        .collect();
    code.split('$')
        .skip(1)
        .map(|s| s[..s.find(|c| !is_name(c)).unwrap_or(s.len())].to_owned())
        .filter(|name| !name.is_empty() && !defined.contains(name.as_str()))
        .collect()
}

/// Each NATS user of the configuration and the `$VARIABLE` its password comes from.
pub fn nats_user_passwords() -> BTreeMap<String, String> {
    let field = |entry: &str, key: &str| {
        entry.split(',').find_map(|part| {
            let value = part
                .trim()
                .strip_prefix(key)?
                .trim_start()
                .strip_prefix(':')?;
            Some(value.trim().to_owned())
        })
    };
    nats_configuration("nats-server.conf")
        .split('{')
        .filter_map(|entry| {
            let password = field(entry, "password")?;
            Some((
                field(entry, "user")?,
                password.strip_prefix('$')?.to_owned(),
            ))
        })
        .collect()
}

/// `postgres://role:password@host:port/database` as (role, password, host:port, database).
pub fn parse_database_url(url: &str) -> Option<(String, String, String, String)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let (credentials, location) = rest.rsplit_once('@')?;
    let (role, password) = credentials.split_once(':')?;
    let (host, database) = location.split_once('/')?;
    Some((
        role.to_owned(),
        password.to_owned(),
        host.to_owned(),
        database.to_owned(),
    ))
}

/// A compose duration (`20s`, `1m30s`, `1500ms`) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    let (mut total, mut rest) = (0, text);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, ms) = [("ms", 1), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)]
            .into_iter()
            .find(|(unit, _)| rest.starts_with(unit))?;
        total += number * ms;
        rest = &rest[unit.len()..];
    }
    Some(total)
}

/// The Dockerfile's instructions (upper-cased) and their arguments, continuation lines joined.
pub fn dockerfile_instructions() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read("Dockerfile").lines().map(str::trim) {
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                if let Some((instruction, argument)) = current.split_once(char::is_whitespace) {
                    instructions.push((instruction.to_uppercase(), argument.trim().to_owned()));
                }
                current.clear();
            }
        }
    }
    instructions
}
