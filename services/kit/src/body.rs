//! Request bodies: read under a size limit and a deadline, parsed as a JSON object, fields checked
//! by the REST contract's type rules (API.md, "Types and validation").

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use serde_json::{Map, Value};

/// Why a request body was refused. Services map these onto their own error shapes.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The body is larger than the configured limit (413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body or a field breaks a rule of the contract (400). The text is for logs only.
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// How much body a request may carry and how long the client may take to send it.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted body, in bytes.
    pub max_bytes: usize,
    /// Time allowed between the handler starting to read and the last byte arriving.
    pub timeout: Duration,
}

/// Past the limit we keep reading (and discarding) up to this many times the limit, so that
/// the client reads our 413 instead of a connection reset; beyond that we give up on it.
const DRAIN_FACTOR: usize = 64;

/// Reads the whole body and parses it as a JSON object.
pub async fn read_object(body: Body, limits: Limits) -> Result<Fields, Rejection> {
    let bytes = tokio::time::timeout(limits.timeout, read_limited(body, limits.max_bytes))
        .await
        .map_err(|_| {
            Rejection::Invalid(format!("body not received within {:?}", limits.timeout))
        })??;
    Fields::parse(&bytes)
}

async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, Rejection> {
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|error| Rejection::Invalid(format!("body could not be read: {error}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            bytes.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_FACTOR) {
            break;
        }
    }
    if seen > limit {
        return Err(Rejection::TooLarge { limit });
    }
    Ok(bytes)
}

/// Parses a path segment that must be a signed 32-bit integer id.
pub fn path_id(raw: &str) -> Result<i32, Rejection> {
    raw.parse()
        .map_err(|_| Rejection::Invalid(format!("path id {raw:?} is not a 32-bit integer")))
}

/// The fields of a JSON object body, with getters that enforce the contract's type rules.
///
/// Unknown fields are ignored; a getter for a field that is present always validates it.
#[derive(Debug, Clone)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// Parses `bytes` as a JSON object; anything else (not JSON, an array, empty) is invalid.
    pub fn parse(bytes: &[u8]) -> Result<Self, Rejection> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(Rejection::Invalid("body is not a JSON object".into())),
            Err(error) => Err(Rejection::Invalid(format!("body is not JSON: {error}"))),
        }
    }

    /// The required `command` string.
    pub fn command(&self) -> Result<&str, Rejection> {
        match self.0.get("command") {
            Some(Value::String(command)) => Ok(command),
            _ => Err(invalid("command", "must be a string")),
        }
    }

    /// A required id: a JSON integer in the signed 32-bit range.
    pub fn id(&self, key: &'static str) -> Result<i32, Rejection> {
        self.int(key, i32::MIN)
    }

    /// A required JSON integer in `min..=i32::MAX`.
    pub fn int(&self, key: &'static str, min: i32) -> Result<i32, Rejection> {
        self.opt_int(key, min)?.ok_or_else(|| missing(key))
    }

    /// An optional JSON integer in `min..=i32::MAX`; `3.0`, `"3"` and `null` are invalid when present.
    pub fn opt_int(&self, key: &'static str, min: i32) -> Result<Option<i32>, Rejection> {
        let Some(value) = self.0.get(key) else {
            return Ok(None);
        };
        let number = value
            .as_i64()
            .ok_or_else(|| invalid(key, "must be an integer"))?;
        match i32::try_from(number) {
            Ok(number) if number >= min => Ok(Some(number)),
            _ => Err(invalid(key, "is out of range")),
        }
    }

    /// A required non-empty JSON string.
    pub fn text(&self, key: &'static str) -> Result<String, Rejection> {
        self.opt_text(key)?.ok_or_else(|| missing(key))
    }

    /// An optional non-empty JSON string without a NUL character (`\u0000`), which PostgreSQL
    /// cannot store in text: refused here rather than failing in the database.
    pub fn opt_text(&self, key: &'static str) -> Result<Option<String>, Rejection> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if text.contains('\0') => {
                Err(invalid(key, "must not contain NUL (\\u0000)"))
            }
            Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
            Some(_) => Err(invalid(key, "must be a non-empty string")),
        }
    }

    /// A required price: a finite JSON number `>= 0`, integer or fraction.
    pub fn price(&self, key: &'static str) -> Result<f64, Rejection> {
        self.opt_price(key)?.ok_or_else(|| missing(key))
    }

    /// An optional price.
    pub fn opt_price(&self, key: &'static str) -> Result<Option<f64>, Rejection> {
        let Some(value) = self.0.get(key) else {
            return Ok(None);
        };
        match value.as_f64() {
            // `+ 0.0` turns a negative zero into zero, so it is stored and echoed as `0.0`.
            Some(price) if price.is_finite() && price >= 0.0 => Ok(Some(price + 0.0)),
            _ => Err(invalid(key, "must be a finite number >= 0")),
        }
    }
}

/// Why a message for which [`escapes_nul`] is true is refused.
pub const HOLDS_NUL: &str = "a string holds NUL (\\u0000), which no text column stores";

/// True when a JSON text has a string holding NUL: the escape `\u0000` (a raw NUL byte is not
/// valid JSON, and `\\u0000` is a backslash followed by text). PostgreSQL's text cannot store
/// NUL, so a command or body carrying one is refused as malformed before it reaches a database.
pub fn escapes_nul(json: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = json[at..].iter().position(|&byte| byte == b'\\') {
        let start = at + found;
        let end = start
            + json[start..]
                .iter()
                .take_while(|&&byte| byte == b'\\')
                .count();
        // In a run of backslashes, pairs are escaped backslashes; an odd one escapes what follows.
        if (end - start) % 2 == 1 && json[end..].starts_with(b"u0000") {
            return true;
        }
        at = end;
    }
    false
}

fn missing(key: &str) -> Rejection {
    Rejection::Invalid(format!("field `{key}` is required"))
}

fn invalid(key: &str, rule: &str) -> Rejection {
    Rejection::Invalid(format!("field `{key}` {rule}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Fields {
        Fields::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn only_a_json_object_is_a_body() {
        for body in [
            "",
            "[]",
            "[1]",
            "3",
            "\"x\"",
            "null",
            "{",
            "{\"a\":1}x",
            "{'a':1}",
        ] {
            assert!(
                Fields::parse(body.as_bytes()).is_err(),
                "{body:?} was accepted"
            );
        }
        assert!(Fields::parse(b" {} ").is_ok());
    }

    #[test]
    fn ids_are_json_integers_in_the_signed_32_bit_range() {
        let cases = [
            ("3", Some(3)),
            ("-3", Some(-3)),
            ("2147483647", Some(i32::MAX)),
            ("-2147483648", Some(i32::MIN)),
            ("2147483648", None),
            ("-2147483649", None),
            ("99999999999999999999", None),
            ("3.0", None),
            ("3.5", None),
            ("1e2", None),
            ("\"3\"", None),
            ("null", None),
            ("true", None),
            ("[3]", None),
        ];
        for (literal, expected) in cases {
            let got = fields(&format!("{{\"id\":{literal}}}")).id("id").ok();
            assert_eq!(got, expected, "id {literal}");
        }
        assert!(fields("{}").id("id").is_err());
    }

    #[test]
    fn an_integer_below_its_minimum_is_invalid() {
        assert!(fields(r#"{"quantity":0}"#).int("quantity", 1).is_err());
        assert_eq!(fields(r#"{"quantity":0}"#).int("quantity", 0).unwrap(), 0);
        assert!(fields(r#"{"quantity":-1}"#).int("quantity", 0).is_err());
    }

    #[test]
    fn a_nul_is_found_only_where_a_string_escapes_it() {
        for json in [
            r#"{"a":"\u0000"}"#,
            r#"{"a":"x\u0000y"}"#,
            r#"{"a":"\\\u0000"}"#,
            r#"{"\u0000":1}"#,
            r#"["\\","\u0000"]"#,
        ] {
            assert!(escapes_nul(json.as_bytes()), "{json}");
        }
        for json in [
            r#"{"a":"u0000"}"#,
            r#"{"a":"\\u0000"}"#,
            r#"{"a":"\\\\u0000"}"#,
            r#"{"a":"\u0001"}"#,
            r#"{"a":"\"}"#,
            "",
        ] {
            assert!(!escapes_nul(json.as_bytes()), "{json}");
        }
    }

    #[test]
    fn strings_must_be_non_empty_strings_when_present() {
        assert_eq!(fields(r#"{"name":"a"}"#).text("name").unwrap(), "a");
        assert_eq!(fields(r#"{"name":" "}"#).text("name").unwrap(), " ");
        for literal in ["\"\"", "null", "1", "[]", "{}"] {
            assert!(
                fields(&format!("{{\"name\":{literal}}}"))
                    .opt_text("name")
                    .is_err(),
                "{literal}"
            );
        }
        assert_eq!(fields("{}").opt_text("name").unwrap(), None);
        assert!(fields("{}").text("name").is_err());
    }

    #[test]
    fn a_string_holding_a_nul_character_is_invalid() {
        for literal in [r#""\u0000""#, r#""a\u0000b""#] {
            assert!(
                fields(&format!("{{\"name\":{literal}}}"))
                    .opt_text("name")
                    .is_err(),
                "{literal}"
            );
        }
    }

    #[test]
    fn prices_are_finite_non_negative_numbers_integer_or_fraction() {
        let cases = [
            ("157", Some(157.0)),
            ("8.5", Some(8.5)),
            ("0", Some(0.0)),
            ("-0.0", Some(0.0)),
            ("1e3", Some(1000.0)),
            ("-0.01", None),
            ("\"1\"", None),
            ("null", None),
        ];
        for (literal, expected) in cases {
            let got = fields(&format!("{{\"price\":{literal}}}"))
                .price("price")
                .ok();
            assert_eq!(got, expected, "price {literal}");
        }
        let zero = fields(r#"{"price":-0.0}"#).price("price").unwrap();
        assert!(zero.is_sign_positive());
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(fields(r#"{"id":1,"id":2}"#).id("id").unwrap(), 2);
    }

    #[test]
    fn path_ids_must_be_32_bit_integers() {
        assert_eq!(path_id("12").unwrap(), 12);
        assert_eq!(path_id("-4").unwrap(), -4);
        for raw in ["abc", "1.5", "", "2147483648", "1e3", " 1"] {
            assert!(path_id(raw).is_err(), "{raw:?}");
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_too_large_and_is_read_to_its_end() {
        let limits = Limits {
            max_bytes: 8,
            timeout: Duration::from_secs(1),
        };
        let result = read_object(Body::from(vec![b' '; 100]), limits).await;
        assert!(
            matches!(result, Err(Rejection::TooLarge { limit: 8 })),
            "{result:?}"
        );
        let ok = read_object(Body::from("{\"a\":1}"), limits).await;
        assert!(ok.is_ok());
    }
}
