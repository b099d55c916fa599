//! Reading what `GET /metrics` answers: the Prometheus text format, version 0.0.4, as strictly
//! as Prometheus reads a scrape (every line a comment, a `# HELP` or `# TYPE` of a family, or a
//! sample; a family typed at most once and before its samples, its samples in one group).

use std::collections::{BTreeMap, BTreeSet};

/// One sample: metric name, labels (values as written, escapes kept) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name (`http_requests_total`, `..._bucket`, ...).
    pub name: String,
    /// Label names and values, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The samples of `text`, in order, or the first line that breaks the format.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the text does not end with a line feed".to_owned());
    }
    let mut format = Format::default();
    for (number, line) in text.lines().enumerate() {
        format
            .line(line)
            .map_err(|error| format!("line {}: {error}: {line:?}", number + 1))?;
    }
    Ok(format.samples)
}

#[derive(Default)]
struct Format {
    /// Family name to type, from `# TYPE`.
    types: BTreeMap<String, String>,
    helped: BTreeSet<String>,
    /// Families whose samples are over: a sample of another one came after them.
    closed: BTreeSet<String>,
    current: Option<String>,
    samples: Vec<Sample>,
}

impl Format {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some(comment) = line.strip_prefix('#') else {
            return self.sample(line);
        };
        let mut words = comment.trim_start().splitn(3, [' ', '\t']);
        let (keyword, name) = (words.next().unwrap_or_default(), words.next());
        let rest = words.next().unwrap_or_default().trim();
        if !matches!(keyword, "HELP" | "TYPE") {
            return Ok(()); // a plain comment
        }
        let name = name
            .filter(|name| is_metric_name(name))
            .ok_or("no metric name")?;
        let seen = match keyword {
            "HELP" => !self.helped.insert(name.to_owned()),
            _ => {
                if !matches!(
                    rest,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(format!("unknown type {rest:?}"));
                }
                if self
                    .samples
                    .iter()
                    .any(|sample| self.family(&sample.name) == name)
                {
                    return Err("TYPE after the family's samples".to_owned());
                }
                self.types
                    .insert(name.to_owned(), rest.to_owned())
                    .is_some()
            }
        };
        if seen {
            return Err(format!("a second {keyword} of {name}"));
        }
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let (name, mut rest) = line.split_at(end);
        if !is_metric_name(name) {
            return Err("no metric name".to_owned());
        }
        let mut labels = Vec::new();
        if let Some(inside) = rest.strip_prefix('{') {
            rest = inside;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (label, value, after) = label_pair(rest)?;
                labels.push((label.to_owned(), value.to_owned()));
                rest = match after.strip_prefix(',') {
                    Some(after) => after,
                    None if after.starts_with('}') => after,
                    None => return Err("a label not followed by `,` or `}`".to_owned()),
                };
            }
        }
        if !rest.starts_with([' ', '\t']) {
            return Err("no space before the value".to_owned());
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or("no value")?;
        let value: f64 = value
            .parse()
            .map_err(|_| format!("the value {value:?} is not a number"))?;
        if let Some(timestamp) = fields.next()
            && timestamp.parse::<i64>().is_err()
        {
            return Err(format!("the timestamp {timestamp:?} is not an integer"));
        }
        if fields.next().is_some() {
            return Err("more than a value and a timestamp".to_owned());
        }
        let family = self.family(name).to_owned();
        if self.types.get(&family).is_some_and(|t| t == "histogram")
            && name.ends_with("_bucket")
            && !labels.iter().any(|(label, _)| label == "le")
        {
            return Err("a histogram bucket without `le`".to_owned());
        }
        if self.current.as_ref() != Some(&family) {
            if self.closed.contains(&family) {
                return Err(format!("the samples of {family} are not in one group"));
            }
            self.closed.extend(self.current.replace(family));
        }
        self.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
        Ok(())
    }

    /// The family a sample belongs to: `x` for `x_bucket`, `x_sum` and `x_count` of a typed
    /// histogram or summary `x`, otherwise its own name.
    fn family<'a>(&self, sample: &'a str) -> &'a str {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = sample.strip_suffix(suffix)
                && self
                    .types
                    .get(base)
                    .is_some_and(|t| t == "histogram" || (t == "summary" && suffix != "_bucket"))
            {
                return base;
            }
        }
        sample
    }
}

/// `name="value"` at the start of `text`: the label's name, its value, and what follows.
fn label_pair(text: &str) -> Result<(&str, &str, &str), String> {
    let (name, rest) = text.split_once('=').ok_or("a label without `=`")?;
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if !starts_well || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("{name:?} is not a label name"));
    }
    let value = rest.strip_prefix('"').ok_or("a label value not quoted")?;
    let mut chars = value.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((name, &value[..at], &value[at + 1..])),
            // The only escapes of a label value: `\\`, `\"` and `\n`.
            '\\' => match chars.next() {
                Some((_, '\\' | '"' | 'n')) => {}
                _ => return Err("a label value with an unknown escape".to_owned()),
            },
            _ => {}
        }
    }
    Err("a label value not closed".to_owned())
}

fn is_metric_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Scrapes `url` as Prometheus does: 200, the text format's content type, and its samples.
pub async fn scrape(url: &str) -> Vec<Sample> {
    let reply = reqwest::get(url).await.expect("scrape");
    assert_eq!(reply.status(), 200, "{url}");
    let content_type = reply.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{url}: {content_type}"
    );
    let text = reply.text().await.expect("text");
    parse(&text).unwrap_or_else(|error| panic!("{url}: {error}:\n{text}"))
}

/// The sum of the values of the samples named `name` that carry every one of `labels`: over
/// the replicas of a service, a counter's total.
pub fn total(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(key, value)| sample.labels.iter().any(|(k, v)| k == key && v == value))
        })
        .map(|sample| sample.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_reader_refuses_what_prometheus_would_refuse() {
        let valid = concat!(
            "# HELP http_requests_total HTTP requests answered.\n",
            "# TYPE http_requests_total counter\n",
            "http_requests_total{method=\"GET\",route=\"/user/{id}\",status=\"404\"} 1\n",
            "http_requests_total{method=\"GET\",route=\"a \\\"b\\\" \\\\ \\n\",} 2 1700000000000\n",
            "# a comment\n",
            "\n",
            "# TYPE latency_seconds histogram\n",
            "latency_seconds_sum 0.5\n",
            "latency_seconds_count 1\n",
            "latency_seconds_bucket{le=\"+Inf\"} 1\n",
            "untyped NaN\n",
            "gauge -Inf\n",
        );
        let samples = parse(valid).expect("valid");
        assert_eq!(samples.len(), 7);
        assert_eq!(samples[0].name, "http_requests_total");
        assert_eq!(
            samples[0].labels[1],
            ("route".to_owned(), "/user/{id}".to_owned())
        );
        assert_eq!(samples[1].value, 2.0);
        assert_eq!(parse(""), Ok(Vec::new()));
        for invalid in [
            "x 1",
            "x one\n",
            "x\n",
            "x{a=\"1\" 1\n",
            "x{a=1} 1\n",
            "x{a=\"\\t\"} 1\n",
            "x{1a=\"1\"} 1\n",
            "x{a=\"1\"}1\n",
            "x 1 2 3\n",
            "x 1 1.5\n",
            "1x 1\n",
            "# TYPE x gauges\n",
            "# TYPE x gauge\n# TYPE x gauge\n",
            "x 1\n# TYPE x gauge\n",
            "# HELP x a\n# HELP x b\n",
            "x 1\ny 1\nx 2\n",
            "# TYPE h histogram\nh_bucket 1\n",
        ] {
            assert!(parse(invalid).is_err(), "accepted {invalid:?}");
        }
    }
}
