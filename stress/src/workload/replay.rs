//! `replay FILE`: the assignment's workload files, one command per line:
//!
//! ```text
//! USER create <id> <username> <email> <password>
//! USER get <id>
//! USER update <id> username:<u> email:<e> password:<p>     (any subset of the pairs)
//! USER delete <id> <username> <email> <password>
//! USER purchased <id>
//! PRODUCT create <id> <name> [<description>] <price> <quantity>
//! PRODUCT info <id>                                        (or get)
//! PRODUCT update <id> name:<n> description:<d> price:<p> quantity:<q>
//! PRODUCT delete <id> <name> [<description>] <price> <quantity>
//! ORDER place <product_id> <user_id> [<quantity>]           (quantity 1 when left out)
//! shutdown
//! restart
//! ```
//!
//! Their real quirks are tolerated: `#` comments, whole-line or trailing; blank lines; verbs in
//! any case. Values are sent with the type they look like (`3` a number, `3.5` a number, `x` a
//! string), so the server's own validation answers malformed ones. A line that cannot be read is
//! reported and skipped. `shutdown` maps onto `POST /admin/shutdown` and ends the replay; a first
//! command `restart` keeps the data, any other first command starts from a reset.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::Ctx;
use crate::{
    client::{Failure, Request},
    engine::{self, Shape, Source},
    report::{Check, Summary},
};

/// One line of a workload file, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A request to send.
    Command {
        /// 1-based line number.
        number: usize,
        /// The line as written, comment removed.
        text: String,
        /// What it becomes.
        request: Request,
    },
    /// `shutdown`.
    Shutdown { number: usize },
    /// `restart`.
    Restart { number: usize },
    /// A line that could not be read, with the reason.
    Skipped {
        number: usize,
        text: String,
        reason: String,
    },
}

/// Reads a workload file.
pub fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .enumerate()
        .filter_map(|(index, raw)| {
            let number = index + 1;
            let text = raw.split('#').next().unwrap_or_default().trim();
            if text.is_empty() {
                return None;
            }
            let tokens: Vec<&str> = text.split_whitespace().collect();
            let line = match tokens[0].to_ascii_lowercase().as_str() {
                "shutdown" if tokens.len() == 1 => Line::Shutdown { number },
                "restart" if tokens.len() == 1 => Line::Restart { number },
                _ => match command(&tokens) {
                    Ok(request) => Line::Command {
                        number,
                        text: text.to_owned(),
                        request,
                    },
                    Err(reason) => Line::Skipped {
                        number,
                        text: text.to_owned(),
                        reason,
                    },
                },
            };
            Some(line)
        })
        .collect()
}

fn command(tokens: &[&str]) -> Result<Request, String> {
    let service = tokens[0].to_ascii_uppercase();
    let verb = tokens
        .get(1)
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_default();
    let args = tokens.get(2..).unwrap_or_default();
    let need = |n: usize| {
        if args.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "{service} {verb} needs {n} arguments, has {}",
                args.len()
            ))
        }
    };
    match (service.as_str(), verb.as_str()) {
        ("USER", "create" | "delete") => {
            need(4)?;
            let body = json!({"command": verb, "id": number(args[0]), "username": args[1], "email": args[2], "password": args[3]});
            Ok(Request::post("/user", &body))
        }
        ("USER", "get") => need(1).map(|()| Request::get(format!("/user/{}", args[0]))),
        ("USER", "purchased") => {
            need(1).map(|()| Request::get(format!("/user/purchased/{}", args[0])))
        }
        ("USER", "update") => need(1).and_then(|()| update("/user", args, &[])),
        ("PRODUCT", "create") => {
            // The description is optional; when present it may hold spaces.
            need(4)?;
            let mut body = json!({"command": "create", "id": number(args[0]), "name": args[1]});
            let description = args[2..args.len() - 2].join(" ");
            if !description.is_empty() {
                body["description"] = json!(description);
            }
            body["price"] = number(args[args.len() - 2]);
            body["quantity"] = number(args[args.len() - 1]);
            Ok(Request::post("/product", &body))
        }
        ("PRODUCT", "info" | "get") => {
            need(1).map(|()| Request::get(format!("/product/{}", args[0])))
        }
        ("PRODUCT", "update") => {
            need(1).and_then(|()| update("/product", args, &["price", "quantity"]))
        }
        ("PRODUCT", "delete") => {
            need(4)?;
            let body = json!({
                "command": "delete", "id": number(args[0]), "name": args[1],
                "price": number(args[args.len() - 2]), "quantity": number(args[args.len() - 1]),
            });
            Ok(Request::post("/product", &body))
        }
        ("ORDER", "place") => {
            need(2)?;
            let quantity = args.get(2).map_or(json!(1), |q| number(q));
            let body = json!({"command": "place order", "product_id": number(args[0]), "user_id": number(args[1]), "quantity": quantity});
            Ok(Request::post("/order", &body))
        }
        _ => Err(format!("unknown command {service} {verb}")),
    }
}

/// `update <id> key:value ...`: the pairs given, numbers where `numeric` says so.
fn update(path: &str, args: &[&str], numeric: &[&str]) -> Result<Request, String> {
    let mut body = Map::new();
    body.insert("command".into(), json!("update"));
    body.insert("id".into(), number(args[0]));
    for pair in &args[1..] {
        let (key, value) = pair
            .split_once(':')
            .ok_or_else(|| format!("{pair:?} is not key:value"))?;
        let value = if numeric.contains(&key) {
            number(value)
        } else {
            json!(value)
        };
        body.insert(key.to_owned(), value);
    }
    Ok(Request::post(path, &Value::Object(body)))
}

/// A token as the JSON value it looks like: integer, then float, else string.
fn number(token: &str) -> Value {
    if let Ok(integer) = token.parse::<i64>() {
        return json!(integer);
    }
    match token.parse::<f64>() {
        Ok(float) if float.is_finite() => json!(float),
        _ => json!(token),
    }
}

/// Replays `lines` in order over one connection.
pub async fn run(
    ctx: &Ctx,
    shape: &Shape,
    lines: Vec<Line>,
    verbose: bool,
    load: String,
) -> anyhow::Result<Summary> {
    for line in &lines {
        if let Line::Skipped {
            number,
            text,
            reason,
        } = line
        {
            eprintln!("stress: line {number} skipped ({reason}): {text}");
        }
    }
    let restarting = matches!(
        lines.iter().find(|l| !matches!(l, Line::Skipped { .. })),
        Some(Line::Restart { .. })
    );
    if restarting {
        eprintln!("stress: the workload begins with restart: keeping the data");
    } else {
        super::fresh_start(ctx).await?;
    }
    let end = lines
        .iter()
        .position(|l| matches!(l, Line::Shutdown { .. }))
        .unwrap_or(lines.len());
    let commands: Vec<(usize, String, Request)> = lines[..end]
        .iter()
        .filter_map(|line| match line {
            Line::Command {
                number,
                text,
                request,
            } => Some((*number, text.clone(), request.clone())),
            _ => None,
        })
        .collect();
    let requests: Arc<Vec<Request>> = Arc::new(
        commands
            .iter()
            .map(|(_, _, request)| request.clone())
            .collect(),
    );
    let source: Source = Arc::new(move |n| requests.get(usize::try_from(n).ok()?).cloned());
    // A workload file is a script: each line may depend on the ones before it.
    let shape = Shape {
        connections: 1,
        duration: None,
        requests: None,
        warmup: std::time::Duration::ZERO,
        keep_responses: true,
        ..shape.clone()
    };
    let recording = engine::run(&ctx.targets, source, &shape, ctx.label("replay")).await;
    if verbose {
        for ((sequence, outcome), (number, text, _)) in recording.responses.iter().zip(&commands) {
            let answer = match outcome {
                Ok((status, body)) => format!("{status} {}", String::from_utf8_lossy(body)),
                Err(failure) => format!("{failure:?}"),
            };
            println!("line {number:>4} (#{sequence}) {text}\n          -> {answer}");
        }
    }
    let shutdown = end < lines.len();
    let unanswered = recording
        .responses
        .iter()
        .filter(|(_, outcome)| {
            matches!(
                outcome,
                Err(Failure::Connect | Failure::Io | Failure::Timeout)
            )
        })
        .count();
    let mut summary = Summary::new(
        format!("replay ({} commands)", commands.len()),
        load,
        ctx.targets.describe(),
        recording,
    );
    summary.checks.push(Check {
        what: "every command got an answer".into(),
        passed: unanswered == 0,
        detail: format!("{unanswered} of {} unanswered", commands.len()),
    });
    if shutdown {
        ctx.admin("shutdown").await?;
        summary.checks.push(Check {
            what: "shutdown sent".into(),
            passed: true,
            detail: "POST /admin/shutdown: 200".into(),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use hyper::Method;

    use super::*;

    fn body(request: &Request) -> Value {
        serde_json::from_slice(request.body.as_ref().expect("a body")).expect("json")
    }

    fn commands(lines: &[Line]) -> Vec<(usize, Request)> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Command {
                    number, request, ..
                } => Some((*number, request.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn comments_blank_lines_and_case_are_tolerated() {
        let lines = parse(include_str!("../../workloads/quirks.txt"));
        let commands = commands(&lines);
        let (number, first) = &commands[0];
        assert_eq!(
            *number, 2,
            "the comment line and its number are skipped, not renumbered"
        );
        assert_eq!(
            body(first),
            json!({"command": "create", "id": 1, "username": "alice", "email": "alice@example.com", "password": "secret1"})
        );
        assert_eq!(
            body(&commands[1].1)["username"],
            "bob",
            "a lower-case service name"
        );
        assert_eq!(
            (commands[4].0, commands[4].1.path.as_str()),
            (7, "/product"),
            "blank line 4 counts"
        );
    }

    #[test]
    fn products_are_created_with_without_or_with_a_long_description() {
        let commands = commands(&parse(include_str!("../../workloads/quirks.txt")));
        let created: Vec<Value> = commands
            .iter()
            .filter(|(_, r)| r.path == "/product" && body(r)["command"] == "create")
            .map(|(_, r)| body(r))
            .collect();
        assert_eq!(
            created[0],
            json!({"command": "create", "id": 10, "name": "lamp", "description": "a-desk-lamp", "price": 19.99, "quantity": 12})
        );
        assert_eq!(
            created[1],
            json!({"command": "create", "id": 11, "name": "chair", "price": 45, "quantity": 3}),
            "no description"
        );
        assert_eq!(created[2]["description"], "a wide oak table");
        assert_eq!(
            (created[2]["price"].clone(), created[2]["quantity"].clone()),
            (json!(120.5), json!(2))
        );
    }

    #[test]
    fn updates_carry_only_the_pairs_given_with_numbers_as_numbers() {
        let commands = commands(&parse(include_str!("../../workloads/quirks.txt")));
        let updates: Vec<Value> = commands
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.body.is_some() && body(r)["command"] == "update")
            .map(body)
            .collect();
        assert_eq!(
            updates[0],
            json!({"command": "update", "id": 1, "email": "alice@new.example.com"})
        );
        assert_eq!(
            updates[1],
            json!({"command": "update", "id": 2, "username": "robert", "password": "hunter2", "email": "bob@new.example.com"})
        );
        assert_eq!(
            updates[2],
            json!({"command": "update", "id": 10, "price": 17.5})
        );
        assert_eq!(
            updates[3],
            json!({"command": "update", "id": 10, "quantity": 15, "name": "lamp2", "description": "brighter"})
        );
    }

    #[test]
    fn orders_take_product_then_user_and_a_quantity_of_one_when_it_is_left_out() {
        let commands = commands(&parse(include_str!("../../workloads/quirks.txt")));
        let orders: Vec<Value> = commands
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.path == "/order")
            .map(body)
            .collect();
        assert_eq!(
            orders[0],
            json!({"command": "place order", "product_id": 10, "user_id": 1, "quantity": 3})
        );
        assert_eq!(
            orders[1],
            json!({"command": "place order", "product_id": 10, "user_id": 2, "quantity": 1})
        );
        assert_eq!(orders.len(), 4, "ORDER place with one argument is skipped");
    }

    #[test]
    fn reads_become_gets_and_deletes_name_the_matching_fields() {
        let commands = commands(&parse(include_str!("../../workloads/quirks.txt")));
        let gets: Vec<&str> = commands
            .iter()
            .filter(|(_, r)| r.method == Method::GET)
            .map(|(_, r)| r.path.as_str())
            .collect();
        assert_eq!(
            gets,
            ["/user/1", "/product/10", "/product/11", "/user/purchased/1"]
        );
        let deletes: Vec<Value> = commands
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.body.is_some() && body(r)["command"] == "delete")
            .map(body)
            .collect();
        assert_eq!(
            deletes[0],
            json!({"command": "delete", "id": 2, "username": "robert", "email": "bob@new.example.com", "password": "hunter2"})
        );
        assert_eq!(
            deletes[1],
            json!({"command": "delete", "id": 12, "name": "table", "price": 120.5, "quantity": 2})
        );
        assert_eq!(
            deletes[2],
            json!({"command": "delete", "id": 10, "name": "lamp2", "price": 17.5, "quantity": 11}),
            "a description in a delete is passed over"
        );
    }

    #[test]
    fn unreadable_lines_are_reported_with_their_number() {
        let lines = parse(include_str!("../../workloads/quirks.txt"));
        let skipped: Vec<(usize, String)> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Skipped { number, reason, .. } => Some((*number, reason.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, 23);
        assert!(skipped[0].1.contains("unknown command"));
        assert!(skipped[1].1.contains("needs 2 arguments"));
    }

    #[test]
    fn shutdown_and_restart_are_recognised_in_any_case_and_values_keep_their_look() {
        let lines = parse("RESTART\nUSER create x name e p\nShutdown\n");
        assert_eq!(lines[0], Line::Restart { number: 1 });
        assert_eq!(lines[2], Line::Shutdown { number: 3 });
        let Line::Command { request, .. } = &lines[1] else {
            panic!("{lines:?}")
        };
        assert_eq!(
            body(request)["id"],
            "x",
            "a malformed id is sent as it is, for the server to refuse"
        );
        assert_eq!(number("3"), json!(3));
        assert_eq!(number("3.0"), json!(3.0));
        assert_eq!(number("1e400"), json!("1e400"));
        assert_eq!(number("-7"), json!(-7));
    }
}
