//! The paths that name their own servers (the probes, on every replica): each request sent to
//! every server the path names, and every method tried through Nginx, which must not serve them.

use reqwest::Method;
use serde_json::Value;

use super::{
    document::{Document, METHODS},
    plan::{Expect, Listed, Phase, Request, Step},
};

impl Document {
    /// Every method on `path` through Nginx, if the path names its own servers (the replicas):
    /// Nginx does not serve it, and each must answer 404.
    pub fn through_nginx<'d>(&'d self, path: &'d str) -> Vec<Step<'d>> {
        if self.path_servers(path).is_none() {
            return Vec::new();
        }
        let concrete = self.concrete(path);
        let steps = METHODS.iter().map(|method| {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let why = format!("{method} through Nginx, which serves the path on no method");
            Step {
                phase: Phase::Methods,
                listed: Listed::ThroughNginx,
                path,
                why,
                request: Request::new(method, &concrete),
                expect: Expect::Status(404),
            }
        });
        steps.collect()
    }

    /// `step` sent to every server its path names, each server's variables filled in with
    /// every combination of their `values`; as it is if the path names none (the document's
    /// server, Nginx) or if it is meant for Nginx.
    pub fn on_servers<'d>(
        &self,
        step: Step<'d>,
        values: &dyn Fn(&str) -> Vec<String>,
    ) -> Vec<Step<'d>> {
        let servers = match (step.listed, self.path_servers(step.path)) {
            (Listed::ThroughNginx, _) | (_, None) => return vec![step],
            (_, Some(servers)) => servers,
        };
        let urls = servers
            .iter()
            .flat_map(|server| server_urls(server, values));
        let steps = urls.map(|url| Step {
            why: format!("{} on {url}", step.why),
            request: Request {
                server: Some(url),
                ..step.request.clone()
            },
            ..step.clone()
        });
        steps.collect()
    }
}

/// The URLs of `server`: its `url` with each combination of `values` of its variables.
fn server_urls(server: &Value, values: &dyn Fn(&str) -> Vec<String>) -> Vec<String> {
    let url = server["url"].as_str().expect("a server url");
    let variables = server["variables"].as_object().into_iter().flatten();
    variables.fold(vec![url.to_owned()], |urls, (name, _)| {
        let placeholder = format!("{{{name}}}");
        let values = values(name);
        let urls = urls.iter().flat_map(|url| {
            let filled = values.iter().map(|value| url.replace(&placeholder, value));
            filled.collect::<Vec<_>>()
        });
        urls.collect()
    })
}
