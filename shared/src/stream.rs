//! The JetStream streams and durable consumers of the saga, as defined in `nats/streams/` and
//! `nats/consumers/`. The files are the one source: the services create streams and consumers
//! from them at start-up, and `nats stream add --config` / `nats consumer add --config` accept them.

/// A stream definition: its name and its JSON configuration (NATS API format).
#[derive(Debug, Clone, Copy)]
pub struct StreamDef {
    /// Stream name.
    pub name: &'static str,
    /// The file's text.
    pub json: &'static str,
}

/// A durable pull consumer definition.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerDef {
    /// The stream it reads.
    pub stream: &'static str,
    /// Durable name.
    pub name: &'static str,
    /// The file's text.
    pub json: &'static str,
}

macro_rules! stream {
    ($name:literal) => {
        StreamDef {
            name: $name,
            json: include_str!(concat!("../../nats/streams/", $name, ".json")),
        }
    };
}

macro_rules! consumer {
    ($stream:literal, $name:literal) => {
        ConsumerDef {
            stream: $stream,
            name: $name,
            json: include_str!(concat!(
                "../../nats/consumers/",
                $stream,
                "/",
                $name,
                ".json"
            )),
        }
    };
}

/// Owned by the user service: `user.cmd.validate` and `user.evt.>`.
pub const USER_SAGA: StreamDef = stream!("USER_SAGA");
/// Owned by the product service: `product.cmd.reserve|release` and `product.evt.>`.
pub const PRODUCT_SAGA: StreamDef = stream!("PRODUCT_SAGA");
/// Owned by the order service: `order.cmd.place`.
pub const ORDER_SAGA: StreamDef = stream!("ORDER_SAGA");
/// Owned by the order service: `order.evt.confirmed|rejected` outcomes, kept for audit.
pub const ORDER_EVENTS: StreamDef = stream!("ORDER_EVENTS");
/// Created by every saga consumer: messages that could not be handled, under `dead.<subject>`.
pub const DEAD_LETTERS: StreamDef = stream!("DEAD_LETTERS");

/// The user service answers validation requests.
pub const USER_VALIDATE: ConsumerDef = consumer!("USER_SAGA", "user-validate");
/// The order service records user verdicts.
pub const ORDER_USER_VERDICTS: ConsumerDef = consumer!("USER_SAGA", "order-user-verdicts");
/// The product service reserves and releases stock.
pub const PRODUCT_STOCK: ConsumerDef = consumer!("PRODUCT_SAGA", "product-stock");
/// The order service records stock verdicts.
pub const ORDER_STOCK_VERDICTS: ConsumerDef = consumer!("PRODUCT_SAGA", "order-stock-verdicts");
/// The order service stores placed orders and starts their sagas.
pub const ORDER_PLACE: ConsumerDef = consumer!("ORDER_SAGA", "order-place");

/// Every stream.
pub const STREAMS: [StreamDef; 5] = [
    USER_SAGA,
    PRODUCT_SAGA,
    ORDER_SAGA,
    ORDER_EVENTS,
    DEAD_LETTERS,
];
/// Every consumer.
pub const CONSUMERS: [ConsumerDef; 5] = [
    USER_VALIDATE,
    ORDER_USER_VERDICTS,
    PRODUCT_STOCK,
    ORDER_STOCK_VERDICTS,
    ORDER_PLACE,
];

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::subject;

    fn parse(json: &str) -> Value {
        serde_json::from_str(json).expect("definition is JSON")
    }

    fn subjects(stream: &StreamDef) -> Vec<String> {
        let value = parse(stream.json);
        value["subjects"]
            .as_array()
            .expect("subjects")
            .iter()
            .map(|s| s.as_str().expect("str").to_owned())
            .collect()
    }

    /// NATS subject matching: `*` is one token, `>` the rest.
    fn matches(filter: &str, subject: &str) -> bool {
        let (mut f, mut s) = (filter.split('.'), subject.split('.'));
        loop {
            match (f.next(), s.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(a), Some(b)) if a == b => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn every_definition_names_itself_like_its_file() {
        for stream in STREAMS {
            assert_eq!(parse(stream.json)["name"], stream.name);
        }
        for consumer in CONSUMERS {
            assert_eq!(parse(consumer.json)["durable_name"], consumer.name);
            assert!(STREAMS.iter().any(|s| s.name == consumer.stream));
        }
    }

    #[test]
    fn every_saga_subject_is_captured_by_exactly_one_stream() {
        let outcomes = [subject::ORDER_CONFIRMED, subject::ORDER_REJECTED];
        for name in subject::SAGA.into_iter().chain(outcomes) {
            let owners: Vec<_> = STREAMS
                .iter()
                .filter(|s| subjects(s).iter().any(|f| matches(f, name)))
                .map(|s| s.name)
                .collect();
            assert_eq!(owners.len(), 1, "{name} is captured by {owners:?}");
        }
    }

    #[test]
    fn no_stream_keeps_what_a_replica_is_told_of_its_orders() {
        // Nothing in the broker may grow with the number of orders or of replicas.
        let told = subject::order_outcomes_for("a1b2");
        for stream in STREAMS {
            assert!(
                !subjects(&stream)
                    .iter()
                    .any(|f| matches(f, &told) || matches(f, subject::ORDER_OUTCOMES)),
                "{} captures {told}",
                stream.name
            );
        }
    }

    #[test]
    fn no_stream_captures_a_request_reply_subject() {
        // A stream on a request/reply subject would answer the request with its own PubAck.
        let request_reply = [
            subject::USER_CREATE,
            subject::USER_UPDATE,
            subject::USER_DELETE,
            subject::USER_GET,
            subject::PRODUCT_CREATE,
            subject::PRODUCT_UPDATE,
            subject::PRODUCT_DELETE,
            subject::PRODUCT_GET,
        ];
        for name in request_reply {
            for stream in STREAMS {
                assert!(
                    !subjects(&stream).iter().any(|f| matches(f, name)),
                    "{} captures {name}",
                    stream.name
                );
            }
        }
    }

    #[test]
    fn each_consumer_reads_only_subjects_of_its_stream() {
        for consumer in CONSUMERS {
            let filter = parse(consumer.json)["filter_subject"]
                .as_str()
                .expect("filter")
                .to_owned();
            let stream = STREAMS
                .iter()
                .find(|s| s.name == consumer.stream)
                .expect("stream");
            let covered = subjects(stream)
                .iter()
                .any(|s| matches(&filter, s) || matches(s, &filter));
            assert!(
                covered,
                "{} filters {filter} outside {}",
                consumer.name, stream.name
            );
        }
    }
}
