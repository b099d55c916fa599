//! An HTTP client for tests that checks what every response of the contract must be (JSON),
//! and raw-socket helpers for requests no well-behaved client would send.

use std::time::Duration;

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A response: status, raw text (to check number formatting) and the parsed JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The body as sent.
    pub text: String,
    /// The body parsed as JSON (`Value::Null` when it was not JSON, which the checks reject).
    pub json: Value,
    /// The response headers.
    pub headers: reqwest::header::HeaderMap,
}

/// A client for one base URL (`http://127.0.0.1:port`).
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A keep-alive client for `base`.
    pub fn new(base: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("http client");
        Self {
            base: base.into(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.http.get(self.url(path))).await
    }

    /// `POST path` with `body` serialised as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.post_raw(path, body.to_string()).await
    }

    /// `POST path` with `body` serialised as JSON and extra request headers.
    pub async fn post_with(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.to_string())).await
    }

    /// `POST path` with `body` as given, labelled `application/json`.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    /// Any method on `path`, no body.
    pub async fn method(&self, method: &str, path: &str) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        self.send(self.http.request(method, self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request failed to complete");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = response.text().await.expect("reading body");
        assert!(
            content_type.starts_with("application/json"),
            "status {status} came with content-type {content_type:?} and body {text:?}"
        );
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("status {status} body is not JSON: {text:?}"));
        Reply {
            status,
            text,
            json,
            headers,
        }
    }
}

/// Sends `head` (request line and headers, without the blank line) plus `partial_body` on a raw
/// socket, then keeps the connection open without sending more, and returns the status line and
/// body the server answers with, or `None` if it closed without answering within `limit`.
pub async fn stalled_request(
    addr: &str,
    head: &str,
    partial_body: &[u8],
    limit: Duration,
) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .await
        .expect("write head");
    stream.write_all(partial_body).await.expect("write body");
    let mut response = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if complete(&response) {
                        break;
                    }
                }
            }
        }
    })
    .await;
    if read.is_err() && response.is_empty() {
        return None;
    }
    parse_response(&response)
}

fn complete(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| {
            line.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .and_then(|v| v.parse::<usize>().ok());
    length.is_some_and(|length| body.len() >= length)
}

fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}
