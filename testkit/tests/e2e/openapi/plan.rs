//! The requests derived from the document, in the order they are sent: its examples, the
//! invalid variants its schemas imply, and the methods its paths do not document (`servers`
//! spreads them over the servers a path names).

use std::{collections::BTreeSet, fmt};

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::document::{Document, METHODS, Operation};

/// When a request is sent: data is created before it is read, updated, ordered and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Methods,
    Create,
    Read,
    Update,
    Order,
    Reread,
    Delete,
    Operator,
}

/// What the answer's status must be, besides one the document lists.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// A valid request: not refused (400, 401, 405, 413, 429) and no fault (5xx).
    Success,
    /// Exactly this status.
    Status(u16),
}

/// Where the document lists the answers a step may get.
#[derive(Clone, Copy)]
pub enum Listed<'d> {
    /// The operation's `responses`.
    Operation(Operation<'d>),
    /// A method the path does not document: the path's `x-method-not-allowed`, status 405.
    MethodNotAllowed,
    /// A path served by the replicas only, asked through Nginx: the path's `x-through-nginx`.
    ThroughNginx,
}

/// One request of the run: of an operation, of a method its path does not document, or of a
/// path through Nginx that Nginx does not serve.
#[derive(Clone)]
pub struct Step<'d> {
    pub phase: Phase,
    pub listed: Listed<'d>,
    /// The path as the document writes it (`/user/{id}`).
    pub path: &'d str,
    /// Which example or variant the request is, for failure messages.
    pub why: String,
    pub request: Request,
    pub expect: Expect,
}

impl<'d> Step<'d> {
    pub fn new(
        phase: Phase,
        op: Operation<'d>,
        why: String,
        request: Request,
        expect: Expect,
    ) -> Self {
        Self {
            phase,
            listed: Listed::Operation(op),
            path: op.path,
            why,
            request,
            expect,
        }
    }

    pub fn operation(&self) -> Option<Operation<'d>> {
        match self.listed {
            Listed::Operation(op) => Some(op),
            Listed::MethodNotAllowed | Listed::ThroughNginx => None,
        }
    }
}

/// An HTTP request, path filled in; a body is sent as `application/json`.
#[derive(Clone)]
pub struct Request {
    pub method: Method,
    /// The server's URL (`http://127.0.0.1:7101`) when the path names its own servers; `None`
    /// for the document's server, Nginx.
    pub server: Option<String>,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl Request {
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            server: None,
            path: path.to_owned(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn with_body(&self, body: String) -> Self {
        Self {
            body: Some(body),
            ..self.clone()
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = self.server.as_deref().unwrap_or_default();
        write!(f, "{} {server}{}", self.method, self.path)?;
        for (name, value) in &self.headers {
            match value.strip_prefix("Bearer ") {
                Some(token) => write!(f, " [{name}: Bearer <{} characters>]", token.len())?,
                None => write!(f, " [{name}: {}]", shorten(value))?,
            }
        }
        match &self.body {
            Some(body) => write!(f, " {}", shorten(body)),
            None => Ok(()),
        }
    }
}

/// `text` cut to 200 characters, for failure messages.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}... ({} bytes)", &text[..end], text.len()),
        None => text.to_owned(),
    }
}

impl Document {
    /// Every request of `op`: its examples, and before them the invalid variants the document's
    /// schemas imply, each of which must answer 400 (401 without the credentials it requires).
    pub fn steps<'d>(&'d self, op: Operation<'d>) -> Vec<Step<'d>> {
        let plain = self.request(op, &Map::new(), false);
        let full = self.request(op, &Map::new(), true);
        let optional = (full.headers.len() > plain.headers.len()).then_some(full);
        let invalid = |phase, why, request| Step::new(phase, op, why, request, Expect::Status(400));
        let valid = |phase, why, request| Step::new(phase, op, why, request, Expect::Success);
        let mut steps = Vec::new();

        let Some(schema) = self.body_schema(op) else {
            let secured = plain
                .headers
                .iter()
                .any(|(name, _)| name == "authorization");
            let phase = match (op.method, secured) {
                ("get", _) => Phase::Read,
                (_, true) => Phase::Operator,
                _ => Phase::Order,
            };
            for (why, request) in self.parameter_variants(op, &plain) {
                steps.push(invalid(phase, why, request));
            }
            if secured {
                let mut anonymous = plain.clone();
                anonymous
                    .headers
                    .retain(|(name, _)| name != "authorization");
                let mut wrong = anonymous.clone();
                wrong
                    .headers
                    .push(("authorization".into(), "Bearer wrong".into()));
                for (why, request) in [
                    ("without credentials", anonymous),
                    ("with a wrong token", wrong),
                ] {
                    steps.push(Step::new(
                        phase,
                        op,
                        why.into(),
                        request,
                        Expect::Status(401),
                    ));
                }
            }
            for request in [Some(plain), optional].into_iter().flatten() {
                let why = format!("the examples [{} header(s)]", request.headers.len());
                if phase == Phase::Read {
                    steps.push(valid(Phase::Reread, why.clone(), request.clone()));
                }
                steps.push(valid(phase, why, request));
            }
            return steps;
        };

        let mut branches_seen = BTreeSet::new();
        for (label, example) in self.body_examples(op) {
            let phase = match example["command"].as_str() {
                Some("create") => Phase::Create,
                Some("update") => Phase::Update,
                Some("delete") => Phase::Delete,
                _ => Phase::Order,
            };
            let branch = self.branch(schema, &example);
            if branches_seen.insert(branch.to_string()) {
                for (why, body) in self.body_variants(branch, &example) {
                    steps.push(invalid(
                        phase,
                        format!("example {label} {why}"),
                        plain.with_body(body),
                    ));
                }
                for (why, request) in self.parameter_variants(op, &plain) {
                    let request = request.with_body(example.to_string());
                    steps.push(invalid(phase, format!("example {label}, {why}"), request));
                }
            }
            let why = format!("example {label}");
            steps.push(valid(
                phase,
                why.clone(),
                plain.with_body(example.to_string()),
            ));
            if let Some(full) = &optional {
                let why = format!("{why} with the optional parameters");
                steps.push(valid(phase, why, full.with_body(example.to_string())));
            }
        }
        steps
    }

    /// The member of a `oneOf` the example is for: named by the discriminator, or the first that
    /// accepts it (the schema itself when it has no `oneOf`).
    fn branch<'a>(&'a self, schema: &'a Value, example: &Value) -> &'a Value {
        let schema = self.resolve(schema);
        let discriminator = &schema["discriminator"];
        if let Some(property) = discriminator["propertyName"].as_str() {
            let value = example[property].as_str().unwrap_or_default();
            if let Some(reference) = discriminator["mapping"][value].as_str() {
                return self.resolve(self.target(reference));
            }
        }
        let members = schema["oneOf"].as_array().into_iter().flatten();
        let mut accepting = members.filter(|member| self.accepts(member, example).is_ok());
        accepting
            .next()
            .map_or(schema, |member| self.resolve(member))
    }

    /// `example` made invalid in every way `schema` forbids: each required property dropped,
    /// each property of a wrong type or value, and a body that is not a JSON object at all.
    fn body_variants(&self, schema: &Value, example: &Value) -> Vec<(String, String)> {
        let text = example.to_string();
        let mut variants = vec![
            ("as a JSON array".to_owned(), format!("[{text}]")),
            ("as an empty body".to_owned(), String::new()),
            ("cut short".to_owned(), text[..text.len() / 2].to_owned()),
        ];
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("property name");
            let mut body = example.clone();
            body.as_object_mut()
                .expect("an object example")
                .remove(name);
            variants.push((format!("without `{name}`"), body.to_string()));
        }
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            for (value, why) in wrong_values(self.resolve(property)) {
                let mut body = example.clone();
                body[name] = value;
                variants.push((format!("with `{name}` {why}"), body.to_string()));
            }
        }
        variants
    }

    /// `request` with one parameter at a time made invalid: a word or a number out of range for
    /// an integer path parameter, too short or too long for a header.
    fn parameter_variants(&self, op: Operation, request: &Request) -> Vec<(String, Request)> {
        let mut variants = Vec::new();
        for parameter in self.parameters(op) {
            let name = parameter["name"].as_str().expect("parameter name");
            let schema = self.resolve(&parameter["schema"]);
            let wrong = wrong_values(schema).into_iter();
            let wrong: Vec<(Value, String)> = match parameter["in"].as_str() {
                // In a path everything is text: a word is the wrong type.
                Some("path") if schema["type"] == "integer" => wrong
                    .filter(|(value, _)| value.is_number())
                    .chain([(json!("one"), "a word".to_owned())])
                    .collect(),
                Some("header") => wrong.filter(|(value, _)| value.is_string()).collect(),
                _ => Vec::new(),
            };
            for (value, why) in wrong {
                let values = Map::from_iter([(name.to_owned(), value)]);
                let mut variant = self.request(op, &values, false);
                variant.body.clone_from(&request.body);
                variants.push((format!("with parameter `{name}` {why}"), variant));
            }
        }
        variants
    }

    /// `path` with its parameters filled in from the examples of one of its operations.
    pub fn concrete(&self, path: &str) -> String {
        let operations = self.operations();
        let op = operations.iter().find(|op| op.path == path);
        op.map_or_else(
            || path.to_owned(),
            |op| self.request(*op, &Map::new(), false).path,
        )
    }

    /// The methods `path` does not document: each must answer 405.
    pub fn wrong_methods<'d>(&'d self, path: &'d str, item: &Value) -> Vec<Step<'d>> {
        let concrete = self.concrete(path);
        let undocumented = METHODS.iter().filter(|method| item.get(**method).is_none());
        let steps = undocumented.map(|method| {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let why = format!("{method}, which the path does not document");
            let request = Request::new(method, &concrete);
            Step {
                phase: Phase::Methods,
                listed: Listed::MethodNotAllowed,
                path,
                why,
                request,
                expect: Expect::Status(405),
            }
        });
        steps.collect()
    }
}

/// Values that break `schema`, each with why: a wrong type, an integer written as `1.0` for
/// `format: int32|int64`, a value out of range or of the wrong length, another constant.
fn wrong_values(schema: &Value) -> Vec<(Value, String)> {
    let mut wrong = vec![(Value::Null, "null")];
    // OpenAPI 3.0 has no `const`: a constant is an `enum` of one.
    let constant = schema["enum"].as_array().filter(|values| values.len() == 1);
    if let Some(constant) = constant.and_then(|values| values[0].as_str()) {
        wrong.extend([
            (json!(constant.to_uppercase()), "another string"),
            (json!(1), "a number"),
        ]);
    }
    let (minimum, maximum) = (&schema["minimum"], &schema["maximum"]);
    match schema["type"].as_str() {
        Some("integer") => {
            wrong.extend([(json!("1"), "a string"), (json!(1.5), "a fraction")]);
            if matches!(schema["format"].as_str(), Some("int32" | "int64")) {
                wrong.push((json!(1.0), "an integer written as 1.0"));
            }
            if let Some(minimum) = minimum.as_i64() {
                wrong.push((json!(minimum - 1), "below its minimum"));
            }
            if let Some(maximum) = maximum.as_i64() {
                wrong.push((json!(maximum + 1), "above its maximum"));
            }
        }
        Some("number") => {
            wrong.push((json!("1"), "a string"));
            if let Some(minimum) = minimum.as_f64() {
                wrong.push((json!(minimum - 0.5), "below its minimum"));
            }
            if let Some(maximum) = maximum.as_f64() {
                wrong.push((json!(maximum + 0.5), "above its maximum"));
            }
        }
        Some("string") => {
            wrong.push((json!(1), "a number"));
            let length = |key: &str| schema[key].as_u64().and_then(|n| usize::try_from(n).ok());
            if let Some(min) = length("minLength").filter(|min| *min > 0) {
                wrong.push((json!("k".repeat(min - 1)), "too short"));
            }
            if let Some(max) = length("maxLength") {
                wrong.push((json!("k".repeat(max + 1)), "too long"));
            }
        }
        _ => {}
    }
    wrong
        .into_iter()
        .map(|(value, why)| (value, why.to_owned()))
        .collect()
}
