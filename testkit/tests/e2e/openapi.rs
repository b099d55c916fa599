//! The OpenAPI document `api/openapi.json` against the implementation: Nginx serves it as it is in
//! the repository, and every request derived from it (its examples, the links of its answers, and
//! invalid variants built from its schemas) gets an answer the document lists, with a body its
//! schema accepts. A path that names its own servers (the probes, `/health`, `/ready` and
//! `/metrics`) is asked of every replica of every service, and through Nginx must answer 404.
//!
//! `document` reads the document and checks answers against it; `plan` derives the requests;
//! `servers` sends them to the servers a path names and tries Nginx on those paths.

mod document;
mod plan;
mod servers;

use std::{collections::BTreeSet, time::Duration};

use reqwest::Method;
use serde_json::{Map, Value, json};
use testkit::stack::Stack;

use document::{Document, Operation, SERVER_VARIABLES};
use plan::{Expect, Listed, Phase, Request, Step, shorten};

/// The services and how many replicas of each the test stack runs.
const SERVICES: [&str; 3] = ["user", "product", "order"];
const REPLICAS: u16 = 2;

#[test]
fn the_openapi_document_is_complete_and_its_examples_match_its_own_schemas() {
    let document = Document::load();
    let mut problems = Vec::new();
    let mut ids = BTreeSet::new();
    for op in document.operations() {
        let mut problem = |text: String| problems.push(format!("{}: {text}", op.name()));
        if !ids.insert(op.id) {
            problem("operationId used twice".into());
        }
        for field in ["summary", "description"] {
            if op.spec[field].as_str().is_none_or(str::is_empty) {
                problem(format!("no {field}"));
            }
        }
        for parameter in document.parameters(op) {
            let example = &parameter["example"];
            if let Err(error) = document.accepts(&parameter["schema"], example) {
                problem(format!("parameter example {example}: {error}"));
            }
        }
        if let Some(schema) = document.body_schema(op) {
            let examples = document.body_examples(op);
            if examples.is_empty() {
                problem("no request body example".into());
            }
            for (label, example) in examples {
                if let Err(error) = document.accepts(schema, &example) {
                    problem(format!("example {label}: {error}"));
                }
            }
        }
        for (status, response) in op.spec["responses"].as_object().expect("responses") {
            let response = document.resolve(response);
            for error in content_problems(&document, response) {
                problem(format!("response {status}: {error}"));
            }
            for link in response["links"]
                .as_object()
                .into_iter()
                .flat_map(Map::values)
            {
                let target = link["operationId"].as_str().unwrap_or_default();
                if document.operation(target).is_none() {
                    problem(format!("response {status} links to {target:?}"));
                }
            }
        }
    }
    for (path, item) in document.json["paths"].as_object().expect("paths") {
        let mut problem = |text: String| problems.push(format!("{path}: {text}"));
        if item.get("x-method-not-allowed").is_none() {
            problem("no x-method-not-allowed".into());
        }
        let through_nginx = item.get("x-through-nginx");
        let Some(servers) = item.get("servers") else {
            if through_nginx.is_some() {
                problem("x-through-nginx on a path Nginx serves".into());
            }
            continue;
        };
        match through_nginx.and_then(Value::as_object) {
            Some(responses) if responses.contains_key("404") => {
                for (status, response) in responses {
                    for error in content_problems(&document, document.resolve(response)) {
                        problem(format!("x-through-nginx {status}: {error}"));
                    }
                }
            }
            _ => problem("servers of its own, but no x-through-nginx with a 404".into()),
        }
        let servers = servers.as_array().into_iter().flatten();
        if servers.clone().next().is_none() {
            problem("servers is not a list of servers".into());
        }
        for server in servers {
            for error in server_problems(server) {
                problem(format!("server {}: {error}", server["url"]));
            }
        }
    }
    for (name, scheme) in document.json["components"]["securitySchemes"]
        .as_object()
        .expect("schemes")
    {
        if (&scheme["type"], &scheme["scheme"]) != (&json!("http"), &json!("bearer")) {
            problems.push(format!(
                "security scheme {name}: the test knows only bearer tokens"
            ));
        }
    }
    assert_eq!(document.json["openapi"], "3.0.3");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// How the `content` of a response falls short: a schema that does not compile, or one that is
/// not `type: string` for a media type that is not JSON (its body is checked as a string).
fn content_problems(document: &Document, response: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (media, spec) in response["content"].as_object().into_iter().flatten() {
        let schema = &spec["schema"];
        if let Err(error) = document.compile(schema) {
            problems.push(format!("{media}: {error}"));
        }
        if !document::is_json(media) && document.resolve(schema)["type"] != "string" {
            problems.push(format!(
                "{media}: not JSON, so its schema must be `type: string`"
            ));
        }
    }
    problems
}

/// How a server of a path falls short: a variable of its URL not declared, or without a
/// default, or one the run cannot fill in.
fn server_problems(server: &Value) -> Vec<String> {
    let Some(url) = server["url"].as_str() else {
        return vec!["no url".to_owned()];
    };
    let variables = server["variables"].as_object();
    let mut problems = Vec::new();
    let placeholders = url
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'));
    for (name, _) in placeholders {
        if variables.is_none_or(|variables| !variables.contains_key(name)) {
            problems.push(format!("variable {name} is not declared"));
        }
    }
    for (name, variable) in variables.into_iter().flatten() {
        if variable["default"].as_str().is_none() {
            problems.push(format!("variable {name} has no default"));
        }
        if !SERVER_VARIABLES.contains(&name.as_str()) {
            problems.push(format!("the test cannot fill in variable {name}"));
        }
    }
    problems
}

#[tokio::test]
async fn every_answer_of_the_implementation_matches_the_openapi_document() {
    let stack = Stack::up();
    let mut document = Document::load();
    document.admin_token = stack.secret("admin_token");
    let replicas = SERVICES
        .iter()
        .flat_map(|service| (1..=REPLICAS).map(|replica| stack.replica(service, replica)));
    let mut run = Run {
        document: &document,
        base: stack.url(),
        replicas: replicas.collect(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        sent: 0,
        failures: Vec::new(),
    };

    let served = run.send(&Request::new(Method::GET, "/openapi.json")).await;
    let served: Value = serde_json::from_str(&served.text).expect("GET /openapi.json is JSON");
    assert_eq!(served["openapi"], "3.0.3");
    assert!(
        served == document.json,
        "GET /openapi.json is not api/openapi.json"
    );

    let mut steps: Vec<Step> = Vec::new();
    for (path, item) in document.json["paths"].as_object().expect("paths") {
        steps.extend(document.wrong_methods(path, item));
        steps.extend(document.through_nginx(path));
    }
    for op in document.operations() {
        steps.extend(document.steps(op));
    }
    // Stable: within a phase, steps keep the document's order (paths sorted), so that the
    // operator commands end with `/admin/shutdown`, which stops the stack.
    steps.sort_by_key(|step| step.phase);
    let steps: Vec<Step> = steps
        .into_iter()
        .flat_map(|step| run.spread(step))
        .collect();
    let probes = ["/health", "/ready", "/metrics"].map(|path| {
        let asked = steps.iter().filter(|step| step.path == path);
        let replicas = asked.filter_map(|step| step.request.server.clone());
        (path, replicas.collect::<BTreeSet<String>>().len())
    });
    assert_eq!(
        probes.map(|(_, replicas)| replicas),
        [run.replicas.len(); 3],
        "the probes are not asked of every replica: {probes:?}"
    );

    for step in &steps {
        let answer = run.check(step).await;
        if let (Expect::Success, Some(op)) = (step.expect, step.operation()) {
            run.follow_links(op, &step.why, &answer).await;
        }
    }
    assert!(
        run.failures.is_empty(),
        "{} of {} answers broke the document:\n\n{}",
        run.failures.len(),
        run.sent,
        run.failures.join("\n\n")
    );
    println!("{} requests, every answer as documented", run.sent);
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

/// The run's state: where to send, what was sent and what broke the document.
struct Run<'d> {
    document: &'d Document,
    base: String,
    /// `host:port` of every replica of every service: the values of the server variable
    /// `replica`.
    replicas: Vec<String>,
    http: reqwest::Client,
    sent: usize,
    failures: Vec<String>,
}

impl<'d> Run<'d> {
    /// `step` as sent to each server its path names: to every replica, for the probes.
    fn spread(&self, step: Step<'d>) -> Vec<Step<'d>> {
        let values = |variable: &str| match variable {
            "replica" => self.replicas.clone(),
            other => panic!("no values for the server variable {other}"),
        };
        self.document.on_servers(step, &values)
    }

    async fn send(&mut self, request: &Request) -> Answer {
        let base = request.server.as_deref().unwrap_or(&self.base);
        let url = format!("{base}{}", request.path);
        let mut builder = self.http.request(request.method.clone(), url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        if let Some(body) = &request.body {
            builder = builder
                .header("content-type", "application/json")
                .body(body.clone());
        }
        let response = builder.send().await;
        let response = response.unwrap_or_else(|error| panic!("{request}: no answer: {error}"));
        self.sent += 1;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap_or_default();
        Answer {
            status,
            headers,
            text,
        }
    }

    /// Sends the step's request and records every way its answer breaks the document.
    async fn check(&mut self, step: &Step<'_>) -> Answer {
        let answer = self.send(&step.request).await;
        let (document, status) = (self.document, answer.status);
        let item = &document.json["paths"][step.path];
        let response = match step.listed {
            Listed::Operation(op) => op.spec["responses"].get(status.to_string()),
            Listed::MethodNotAllowed => {
                Some(&item["x-method-not-allowed"]).filter(|_| status == 405)
            }
            Listed::ThroughNginx => item["x-through-nginx"].get(status.to_string()),
        };
        let mut problems = Vec::new();
        match step.expect {
            Expect::Status(expected) if status != expected => {
                problems.push(format!("expected status {expected}"));
            }
            Expect::Success if matches!(status, 400 | 401 | 405 | 413 | 429) || status >= 500 => {
                problems.push("a valid request was refused or failed".to_owned());
            }
            _ => {}
        }
        match response {
            None => problems.push(format!("status {status} is not documented for it")),
            Some(response) => problems.extend(document.mismatches(response, &answer)),
        }
        if !problems.is_empty() {
            let name = step
                .operation()
                .map_or_else(|| format!("path {}", step.path), |op| op.name());
            self.failures.push(format!(
                "{name}, {}:\n  request:  {}\n  response: {status} {}\n  {}",
                step.why,
                step.request,
                shorten(&answer.text),
                problems.join("\n  ")
            ));
        }
        answer
    }

    /// Follows the links the document gives for the answer (`$response.body#/id` into the
    /// linked operation's parameters) and checks those answers too.
    async fn follow_links(&mut self, op: Operation<'d>, why: &str, answer: &Answer) {
        let document = self.document;
        let response = document.resolve(&op.spec["responses"][answer.status.to_string()]);
        let body: Value = serde_json::from_str(&answer.text).unwrap_or_default();
        for (name, link) in response["links"].as_object().into_iter().flatten() {
            let target = link["operationId"].as_str().unwrap_or_default();
            let Some(target) = document.operation(target) else {
                continue;
            };
            let expressions = link["parameters"].as_object().into_iter().flatten();
            let values: Option<Map<String, Value>> = expressions
                .map(|(parameter, expression)| {
                    let pointer = expression.as_str()?.strip_prefix("$response.body#")?;
                    Some((parameter.clone(), body.pointer(pointer)?.clone()))
                })
                .collect();
            // A link whose values are not in this answer (`{}` of a delete) does not apply.
            let Some(values) = values else {
                continue;
            };
            let request = document.request(target, &values, false);
            let why = format!("link {name} of {why} answer {}", answer.status);
            let step = Step::new(Phase::Read, target, why, request, Expect::Success);
            for step in self.spread(step) {
                self.check(&step).await;
            }
        }
    }
}
