//! HTTP/1.1 keep-alive connections to the system, one per worker and target, and where each
//! request goes: through Nginx, or straight to one replica of the service that owns its path.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, client::conn::http1::SendRequest, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// One request of a workload.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// GET or POST.
    pub method: Method,
    /// Path and query, e.g. `/user/3`.
    pub path: String,
    /// A JSON body, for POST.
    pub body: Option<Bytes>,
    /// Extra headers (`authorization`, `prefer`).
    pub headers: Vec<(&'static str, String)>,
}

impl Request {
    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// `POST path` with a JSON body.
    pub fn post(path: impl Into<String>, body: &serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body: Some(body.to_string().into()),
            headers: Vec::new(),
        }
    }

    /// The same request with one more header.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Where requests go: a default address (Nginx), and optionally one replica per service.
#[derive(Debug, Clone)]
pub struct Targets {
    /// `host:port` of each target; index 0 is the default.
    addrs: Vec<String>,
    user: usize,
    product: usize,
    order: usize,
}

impl Targets {
    /// Everything through `base` (`http://host:port`).
    pub fn through(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            addrs: vec![authority(base)?],
            user: 0,
            product: 0,
            order: 0,
        })
    }

    /// `/user` to `user`, `/product` to `product`, `/order` and `/user/purchased` to `order`.
    pub fn direct(base: &str, user: &str, product: &str, order: &str) -> anyhow::Result<Self> {
        let addrs = vec![
            authority(base)?,
            authority(user)?,
            authority(product)?,
            authority(order)?,
        ];
        Ok(Self {
            addrs,
            user: 1,
            product: 2,
            order: 3,
        })
    }

    /// How many distinct targets there are.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True if there are none (never: there is always a default).
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }

    /// The index of the target that serves `path`.
    pub fn route(&self, path: &str) -> usize {
        if path.starts_with("/user/purchased") || path.starts_with("/order") {
            self.order
        } else if path.starts_with("/user") {
            self.user
        } else if path.starts_with("/product") {
            self.product
        } else {
            0
        }
    }

    /// `host:port` of target `index`.
    pub fn addr(&self, index: usize) -> &str {
        &self.addrs[index]
    }

    /// The default target as a URL, for reports.
    pub fn describe(&self) -> String {
        if self.addrs.len() == 1 {
            format!("http://{}", self.addrs[0])
        } else {
            format!(
                "direct: user {}, product {}, order {}",
                self.addrs[1], self.addrs[2], self.addrs[3]
            )
        }
    }
}

fn authority(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("{url}: only http:// URLs"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    anyhow::ensure!(!authority.is_empty(), "{url}: no host");
    Ok(authority.to_owned())
}

/// Why a request got no HTTP response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// The TCP connection could not be opened.
    Connect,
    /// No complete response within the timeout.
    Timeout,
    /// The connection broke mid-request.
    Io,
}

/// A keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    /// Opens a connection to `addr` (`host:port`).
    pub async fn open(addr: &str, timeout: Duration) -> Result<Self, Failure> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Failure::Connect)?
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Failure::Connect)?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            host: addr.to_owned(),
        })
    }

    /// True when the server has closed this connection (say, after a `Connection: close`
    /// answer): a request must go on a new one.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends `request` and reads the whole response. After a failure the connection is unusable.
    pub async fn send(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Failure> {
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(&request.path)
            .header(header::HOST, &self.host);
        if request.body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let body = Full::new(request.body.clone().unwrap_or_default());
        let http_request = builder.body(body).map_err(|_| Failure::Io)?;
        let exchange = async {
            self.sender.ready().await.map_err(|_| Failure::Io)?;
            let response = self
                .sender
                .send_request(http_request)
                .await
                .map_err(|_| Failure::Io)?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| Failure::Io)?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_to_the_service_that_owns_them() {
        let targets =
            Targets::direct("http://n:1", "http://u:2", "http://p:3", "http://o:4").unwrap();
        let cases = [
            ("/user/3", "u:2"),
            ("/user", "u:2"),
            ("/user/purchased/3", "o:4"),
            ("/product/9", "p:3"),
            ("/order", "o:4"),
            ("/order/abc", "o:4"),
            ("/admin/reset", "n:1"),
        ];
        for (path, addr) in cases {
            assert_eq!(targets.addr(targets.route(path)), addr, "{path}");
        }
        let nginx = Targets::through("http://127.0.0.1:8080/").unwrap();
        assert_eq!(nginx.addr(nginx.route("/order")), "127.0.0.1:8080");
        assert!(Targets::through("https://x").is_err());
    }
}
