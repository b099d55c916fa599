//! compose.yml as compose reads it, and compose's `${...}` interpolation.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(path: &str) -> String {
    fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// compose.yml with its anchors and merge keys (`<<`) resolved, as JSON.
pub fn compose() -> Value {
    compose_file("compose.yml")
}

/// A compose file of the repository with its anchors and merge keys (`<<`) resolved, as JSON.
pub fn compose_file(path: &str) -> Value {
    let mut yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    yaml.apply_merge()
        .unwrap_or_else(|e| panic!("{path}: a merge key (<<) cannot be applied: {e}"));
    serde_yaml_ng::from_value(yaml).unwrap_or_else(|e| panic!("{path} as JSON: {e}"))
}

/// What the Compose specification's schema (compose/compose-spec.json) finds wrong in `compose`.
pub fn schema_errors(compose: &Value) -> Vec<String> {
    let schema: Value = serde_json::from_str(&read("compose/compose-spec.json"))
        .unwrap_or_else(|e| panic!("compose/compose-spec.json is not JSON: {e}"));
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("compose/compose-spec.json is not a usable schema: {e}"));
    validator
        .iter_errors(compose)
        .map(|e| format!("at {}: {e}", e.instance_path()))
        .collect()
}

pub fn services(compose: &Value) -> Vec<(&String, &Value)> {
    let services = compose["services"].as_object();
    services.expect("compose.yml has services").iter().collect()
}

pub fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_object(), "compose.yml has no service `{name}`");
    service
}

/// A service's environment as written, before interpolation; a variable without a value (compose
/// takes it from the host) reads as `${NAME}`.
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    let unset = |name: &str| format!("${{{name}}}");
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::Null => (k.clone(), unset(k)),
                Value::String(s) => (k.clone(), s.clone()),
                other => (k.clone(), other.to_string()),
            })
            .collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item.to_owned(), unset(item)),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub fn environment_of(compose: &Value, service: &str, variable: &str) -> String {
    environment(self::service(compose, service))
        .remove(variable)
        .unwrap_or_else(|| panic!("`{service}` does not set {variable}"))
}

/// Notes a problem unless `variable` is set in `environment` to a value that cannot be empty.
pub fn require_set(
    problems: &mut Vec<String>,
    (service, environment): (&str, &BTreeMap<String, String>),
    variable: &str,
    used_in: &str,
) {
    match environment.get(variable) {
        None => problems.push(format!(
            "`{service}` does not set {variable}, used in {used_in}"
        )),
        Some(value) if can_be_empty(value) => {
            problems.push(format!(
                "`{service}` sets {variable}={value:?}, which may be empty"
            ));
        }
        Some(_) => {}
    }
}

/// A string or a list of them (`command`, `healthcheck.test`, `ports`).
pub fn strings(value: &Value) -> Vec<String> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match value {
        Value::Array(items) => items.iter().map(text).collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

pub struct Mount {
    pub bind: bool,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A service's volumes, short (`source:target[:ro]`) and long syntax alike.
pub fn mounts(service: &Value) -> Vec<Mount> {
    let volumes = service["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    volumes
        .iter()
        .map(|volume| match volume.as_str() {
            Some(short) => {
                let parts: Vec<&str> = short.split(':').collect();
                Mount {
                    bind: parts[0].starts_with(['.', '/', '~']),
                    source: parts[0].to_owned(),
                    target: parts.get(1).copied().unwrap_or_default().to_owned(),
                    read_only: parts
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|o| o == "ro")),
                }
            }
            None => Mount {
                bind: volume["type"] == "bind",
                source: volume["source"].as_str().unwrap_or_default().to_owned(),
                target: volume["target"].as_str().unwrap_or_default().to_owned(),
                read_only: volume["read_only"] == true,
            },
        })
        .collect()
}

/// Calls `f` with the path and text of every string in `value`.
pub fn for_each_string(value: &Value, path: &str, f: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(s) => f(path, s),
        Value::Array(items) => {
            for (n, item) in items.iter().enumerate() {
                for_each_string(item, &format!("{path}[{n}]"), f);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                for_each_string(item, &format!("{path}.{key}"), f);
            }
        }
        _ => {}
    }
}

/// One `$NAME` or `${NAME<operator><argument>}`; the operator is "", ":-", "-", ":?", "?", ":+"
/// or "+".
pub struct Interpolation {
    pub name: String,
    pub operator: &'static str,
    pub argument: String,
}

/// The interpolations in `text`, and whether literal text surrounds them (`$$` is a literal $).
pub fn interpolations(text: &str) -> Result<(Vec<Interpolation>, bool), String> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (mut found, mut literal, mut rest) = (Vec::new(), false, text);
    while let Some(at) = rest.find('$') {
        literal |= at > 0;
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix('$') {
            (literal, rest) = (true, escaped);
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or("an unclosed ${")?;
            let inner = &braced[..end];
            if inner.contains('$') {
                return Err("a nested interpolation, which this test does not read".to_owned());
            }
            let (name, tail) = inner.split_at(inner.find(|c| !is_name(c)).unwrap_or(inner.len()));
            let operator = match [":-", ":?", ":+", "-", "?", "+"]
                .into_iter()
                .find(|op| tail.starts_with(op))
            {
                _ if tail.is_empty() => "",
                Some(operator) => operator,
                None => return Err(format!("an unknown interpolation ${{{inner}}}")),
            };
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("${{{inner}}} names no variable"));
            }
            let argument = tail[operator.len()..].to_owned();
            found.push(Interpolation {
                name: name.to_owned(),
                operator,
                argument,
            });
            rest = &braced[end + 1..];
        } else {
            let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
            if end == 0 {
                return Err("a lone $ (a literal one is written $$)".to_owned());
            }
            let name = after[..end].to_owned();
            found.push(Interpolation {
                name,
                operator: "",
                argument: String::new(),
            });
            rest = &after[end..];
        }
    }
    Ok((found, literal || !rest.is_empty()))
}

/// Whether the value may be empty once compose has interpolated it.
pub fn can_be_empty(value: &str) -> bool {
    let Ok((found, literal)) = interpolations(value) else {
        return false;
    };
    !literal
        && found.iter().all(|i| match i.operator {
            ":?" => false,
            ":-" => i.argument.is_empty(),
            _ => true,
        })
}

/// The variable, when the value is one interpolation of it and nothing else.
pub fn sole_variable(value: &str) -> Option<String> {
    match interpolations(value).ok()? {
        (found, false) if found.len() == 1 => found.into_iter().next().map(|i| i.name),
        _ => None,
    }
}
