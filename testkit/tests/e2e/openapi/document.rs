//! The document: its operations, `$ref`s, schemas (compiled with `jsonschema`, `format`
//! asserted) and the requests its examples make.

use std::path::Path;

use jsonschema::{Draft, Keyword, ValidationError, Validator, paths::Location};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{
    Answer,
    plan::{Request, shorten},
};

/// The methods a path is tried with; those it does not document must answer 405.
pub const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// The server variables the run knows how to fill in: `replica`, the `host:port` of a replica.
pub const SERVER_VARIABLES: [&str; 1] = ["replica"];

/// The media type of the Prometheus text format, whose bodies are checked line by line.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4";

/// `api/openapi.json`, parsed.
pub struct Document {
    pub json: Value,
    /// What requests of operations with a security requirement carry as bearer token.
    pub admin_token: String,
}

/// One operation of the document: a method on a path.
#[derive(Clone, Copy)]
pub struct Operation<'d> {
    pub id: &'d str,
    pub method: &'d str,
    pub path: &'d str,
    pub spec: &'d Value,
}

impl Operation<'_> {
    pub fn name(&self) -> String {
        format!("{} ({} {})", self.id, self.method.to_uppercase(), self.path)
    }
}

impl Document {
    pub fn load() -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../api/openapi.json");
        let text = std::fs::read_to_string(&path).expect("api/openapi.json");
        let json = serde_json::from_str(&text).expect("api/openapi.json is JSON");
        let admin_token = String::new();
        Self { json, admin_token }
    }

    pub fn operations(&self) -> Vec<Operation<'_>> {
        let paths = self.json["paths"].as_object().expect("paths");
        let operations = paths.iter().flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                let spec = item.get(*method)?;
                let id = spec["operationId"].as_str().expect("operationId");
                Some(Operation {
                    id,
                    method,
                    path,
                    spec,
                })
            })
        });
        operations.collect()
    }

    pub fn operation(&self, id: &str) -> Option<Operation<'_>> {
        self.operations().into_iter().find(|op| op.id == id)
    }

    /// Follows `$ref`s to components (responses, parameters, examples).
    pub fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value["$ref"].as_str() {
            value = self.target(reference);
        }
        value
    }

    /// What a local reference (`#/components/...`) points at.
    pub fn target(&self, reference: &str) -> &Value {
        let pointer = reference.strip_prefix('#').unwrap_or(reference);
        let target = self.json.pointer(pointer);
        target.unwrap_or_else(|| panic!("$ref {reference} resolves to nothing"))
    }

    pub fn parameters<'a>(&'a self, op: Operation<'a>) -> Vec<&'a Value> {
        let parameters = op.spec["parameters"].as_array().into_iter().flatten();
        parameters
            .map(|parameter| self.resolve(parameter))
            .collect()
    }

    /// The `servers` of `path`'s Path Item, when it names its own instead of the document's.
    pub fn path_servers(&self, path: &str) -> Option<&Vec<Value>> {
        self.json["paths"][path]["servers"].as_array()
    }

    pub fn body_schema<'a>(&self, op: Operation<'a>) -> Option<&'a Value> {
        op.spec["requestBody"]["content"]["application/json"].get("schema")
    }

    /// The request body examples, by name, in the document's order.
    pub fn body_examples(&self, op: Operation) -> Vec<(String, Value)> {
        let media = &op.spec["requestBody"]["content"]["application/json"];
        let examples = media["examples"].as_object().into_iter().flatten();
        let examples =
            examples.map(|(name, e)| (format!("`{name}`"), self.resolve(e)["value"].clone()));
        let example = media
            .get("example")
            .map(|e| ("`example`".to_owned(), e.clone()));
        examples.chain(example).collect()
    }

    /// A validator for `schema`, its `$ref`s resolved in the document's components, with the
    /// `format` keyword asserted (see [`Format`]). OpenAPI 3.0's schemas are JSON Schema draft 4
    /// (where `integer` is a number without a fraction part) with `nullable` added.
    pub fn compile(&self, schema: &Value) -> Result<Validator, String> {
        let mut root = json!({"components": self.json["components"], "allOf": [schema]});
        nullable_as_draft_4(&mut root);
        let options = jsonschema::options().with_draft(Draft::Draft4);
        let validator = options.with_keyword("format", Format::keyword).build(&root);
        validator.map_err(|error| format!("schema {schema} does not compile: {error}"))
    }

    /// Whether `instance` matches `schema`; if not, why (for a `oneOf`, why not each member).
    pub fn accepts(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let validator = self.compile(schema)?;
        if validator.is_valid(instance) {
            return Ok(());
        }
        let errors = validator.iter_errors(instance);
        let at = |e: &ValidationError| format!("at {:?}: {e}", e.instance_path().to_string());
        let mut errors: Vec<String> = errors.map(|error| at(&error)).collect();
        for member in self.resolve(schema)["oneOf"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Err(error) = self.accepts(member, instance) {
                let name = member["$ref"].as_str().unwrap_or("a member");
                errors.push(format!("as {name}: {error}"));
            }
        }
        Err(errors.join("; "))
    }

    /// How an answer breaks its documented response: content type, body, required headers.
    pub fn mismatches(&self, response: &Value, answer: &Answer) -> Vec<String> {
        let response = self.resolve(response);
        let mut problems = Vec::new();
        let header = |name: &str| answer.headers.get(name).map(|v| v.to_str().unwrap_or("?"));
        let content_type = header("content-type").unwrap_or_default();
        let content = response["content"].as_object().into_iter().flatten();
        match content
            .clone()
            .find(|(media, _)| media_matches(media, content_type))
        {
            None if content.count() > 0 => {
                problems.push(format!("content-type {content_type:?} is not documented"));
            }
            None => {}
            Some((media_type, media)) => {
                // A JSON body is checked as JSON; any other as a string, against a schema that
                // `the_openapi_document_is_complete...` requires to be `type: string`.
                let json = is_json(media_type);
                let body = if json {
                    serde_json::from_str::<Value>(&answer.text)
                } else {
                    Ok(Value::String(answer.text.clone()))
                };
                match body {
                    Err(_) => problems.push("the body is not JSON".to_owned()),
                    Ok(body) => {
                        if let Err(error) = self.accepts(&media["schema"], &body) {
                            let schema = &media["schema"];
                            // The error quotes the instance: a whole text body, say 50 KiB of
                            // metrics.
                            let error = if json { error } else { shorten(&error) };
                            problems.push(format!("the body does not match {schema}: {error}"));
                        }
                    }
                }
                if media_matches(PROMETHEUS_TEXT, media_type) {
                    problems.extend(prometheus_mismatches(&answer.text));
                }
            }
        }
        for (name, spec) in response["headers"].as_object().into_iter().flatten() {
            let spec = self.resolve(spec);
            match header(name) {
                None if spec["required"] == true => problems.push(format!("no {name} header")),
                None => {}
                Some(value) => {
                    if let Err(error) = self.accepts(&spec["schema"], &json!(value)) {
                        problems.push(format!("header {name}: {error}"));
                    }
                }
            }
        }
        problems
    }

    /// The request of `op` with `values` for some parameters and examples for the others;
    /// optional parameters are sent only when `optional` is set.
    pub fn request(&self, op: Operation, values: &Map<String, Value>, optional: bool) -> Request {
        let method = Method::from_bytes(op.method.to_uppercase().as_bytes()).expect("method");
        let mut request = Request::new(method, op.path);
        for parameter in self.parameters(op) {
            let name = parameter["name"].as_str().expect("parameter name");
            if parameter["required"] != true && !optional && !values.contains_key(name) {
                continue;
            }
            let value = values.get(name).unwrap_or(&parameter["example"]);
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            match parameter["in"].as_str() {
                Some("path") => request.path = request.path.replace(&format!("{{{name}}}"), &text),
                Some("header") => request.headers.push((name.to_owned(), text)),
                other => panic!("{}: parameters in {other:?} are not supported", op.name()),
            }
        }
        if op.spec["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            let credentials = format!("Bearer {}", self.admin_token);
            request.headers.push(("authorization".into(), credentials));
        }
        request
    }
}

/// Rewrites OpenAPI 3.0's `nullable: true` as draft 4 says it: `null` among the types.
fn nullable_as_draft_4(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if map.remove("nullable") == Some(Value::Bool(true))
                && let Some(Value::String(kind)) = map.get("type").cloned()
            {
                map.insert("type".into(), json!([kind, "null"]));
            }
            map.values_mut().for_each(nullable_as_draft_4);
        }
        Value::Array(items) => items.iter_mut().for_each(nullable_as_draft_4),
        _ => {}
    }
}

/// Whether an answer's `content_type` is of the documented `media` type: the same type and
/// subtype, and every parameter `media` names with the same value (`application/json` matches
/// `application/json; charset=utf-8`, not the other way round).
pub fn media_matches(media: &str, content_type: &str) -> bool {
    let parse = |text: &str| {
        let mut parts = text.split(';').map(|part| part.trim().to_ascii_lowercase());
        let essence = parts.next().unwrap_or_default();
        let parameters: Vec<String> = parts.filter(|part| !part.is_empty()).collect();
        (essence, parameters)
    };
    let ((essence, wanted), (answered, given)) = (parse(media), parse(content_type));
    essence == answered && wanted.iter().all(|parameter| given.contains(parameter))
}

/// Whether bodies of `media` are JSON (`application/json`, or any `+json` type).
pub fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json") || essence.ends_with("+json")
}

/// How a body in the Prometheus text format fails the format, or fails to show the HTTP
/// requests every service counts: by the time it is scraped, every replica has answered some
/// (the run sends each path's undocumented methods first), so `http_requests_total` has samples.
fn prometheus_mismatches(text: &str) -> Vec<String> {
    match testkit::prometheus::parse(text) {
        Err(error) => vec![format!(
            "the body is not in the Prometheus text format: {error}"
        )],
        Ok(samples) if !samples.iter().any(|s| s.name == "http_requests_total") => {
            vec!["the metrics have no http_requests_total sample".to_owned()]
        }
        Ok(_) => Vec::new(),
    }
}

/// The `format` keyword, asserted: OpenAPI's number formats by how the number is written
/// (`double` and `float` with a fraction part, as the contract writes prices: `157.0`; `int32`
/// and `int64` as an integer literal in range), and JSON Schema's string formats (`uuid`,
/// `date-time`) by the validator's own checks.
enum Format {
    Fraction,
    Int32,
    Int64,
    Standard(Validator),
}

impl Format {
    fn keyword<'a>(
        _parent: &'a Map<String, Value>,
        value: &'a Value,
        _path: Location,
    ) -> Result<Box<dyn for<'i> Keyword<'i>>, ValidationError<'a>> {
        let name = value.as_str().unwrap_or_default();
        let format = match name {
            "double" | "float" => Self::Fraction,
            "int32" => Self::Int32,
            "int64" => Self::Int64,
            _ => {
                let options = jsonschema::options().with_draft(Draft::Draft202012);
                let options = options
                    .should_validate_formats(true)
                    .should_ignore_unknown_formats(false);
                let validator = options.build(&json!({"format": name}));
                let unknown = |error| ValidationError::custom(format!("format {name:?}: {error}"));
                Self::Standard(validator.map_err(unknown)?)
            }
        };
        Ok(Box::new(format))
    }
}

impl<'i> Keyword<'i> for Format {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        if self.is_valid(instance) {
            return Ok(());
        }
        let expected = match self {
            Self::Fraction => "a number written with a fraction part",
            Self::Int32 => "an integer literal in the signed 32-bit range",
            Self::Int64 => "an integer literal in the signed 64-bit range",
            Self::Standard(_) => "of its format",
        };
        Err(ValidationError::custom(format!(
            "{instance} is not {expected}"
        )))
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        match (self, instance) {
            (Self::Fraction, Value::Number(n)) => n.is_f64(),
            (Self::Int32, Value::Number(n)) => n.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
            (Self::Int64, Value::Number(n)) => n.as_i64().is_some(),
            (Self::Standard(validator), instance) => validator.is_valid(instance),
            // A number format says nothing of other types.
            _ => true,
        }
    }
}
