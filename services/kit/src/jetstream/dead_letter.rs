//! What becomes of a saga message its handler could not handle: retried after a growing
//! delay, or given up on and kept in `DEAD_LETTERS` with the reason, never dropped.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use futures::StreamExt;

use super::worker::Origin;
use crate::nats::HandlerError;

/// What becomes of a message once its handler has run.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Disposition {
    /// Done.
    Ack,
    /// Deliver it again after this delay.
    Retry(Duration),
    /// Give up on it: keep it in `DEAD_LETTERS` with this reason.
    DeadLetter(String),
}

/// A handler error that is neither "malformed" nor "unavailable" gets this many deliveries.
const FAILING_ATTEMPTS: i64 = 10;

/// Malformed: dead at once. Failing: retried, dead after [`FAILING_ATTEMPTS`]. Unavailable (a
/// dependency is down, which passes): retried until the consumer's last delivery.
pub(super) fn dispose(
    outcome: Result<(), HandlerError>,
    attempt: i64,
    max_deliver: i64,
) -> Disposition {
    let last = max_deliver > 0 && attempt >= max_deliver;
    match outcome {
        Ok(()) => Disposition::Ack,
        Err(error) if error.code == shared::error::BAD_REQUEST => {
            Disposition::DeadLetter(error.message)
        }
        Err(error) if error.code == shared::error::UNAVAILABLE && !last => {
            tracing::warn!(attempt, error = %error.message, "dependency unavailable; saga message will be retried");
            Disposition::Retry(retry_delay(attempt))
        }
        Err(error) if attempt >= FAILING_ATTEMPTS || last => Disposition::DeadLetter(format!(
            "still failing after {attempt} deliveries: {}",
            error.message
        )),
        Err(error) => {
            tracing::warn!(attempt, error = %error.message, "saga message failed; will retry");
            Disposition::Retry(retry_delay(attempt))
        }
    }
}

/// A message given up on.
pub(super) struct DeadLetter<'a> {
    pub subject: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub attempts: i64,
}

/// Stores `letter` in `DEAD_LETTERS` under `dead.<subject>`, once per origin message, in the
/// trace of the handler that gave up on it (when there is one).
pub(super) async fn dead_letter(
    origin: &Origin,
    sequence: u64,
    letter: &DeadLetter<'_>,
) -> anyhow::Result<()> {
    use shared::subject::{
        DEAD_ATTEMPTS_HEADER, DEAD_CONSUMER_HEADER, DEAD_ORIGIN_HEADER, DEAD_REASON_HEADER,
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(DEAD_REASON_HEADER, header_text(letter.reason).as_str());
    headers.insert(
        DEAD_ORIGIN_HEADER,
        format!("{}:{sequence}", origin.stream).as_str(),
    );
    headers.insert(DEAD_CONSUMER_HEADER, origin.consumer.as_str());
    headers.insert(DEAD_ATTEMPTS_HEADER, letter.attempts.to_string().as_str());
    crate::telemetry::inject(&mut headers);
    let publish = PublishMessage::build()
        .payload(bytes::Bytes::copy_from_slice(letter.payload))
        .headers(headers)
        .message_id(format!("dead:{}:{sequence}", origin.stream));
    let subject = shared::subject::dead_letter(letter.subject);
    let stored = origin.js.send_publish(subject, publish).await?.await?;
    // Every replica hears a max-deliveries advisory, and a failed `Term` brings the message
    // back: count the letter where the stream stored it, not where it was a duplicate.
    if !stored.duplicate {
        origin.metrics.dead_lettered(&origin.consumer);
    }
    Ok(())
}

/// `text` as a header value: printable ASCII on one line, at most 500 characters. A reason
/// may quote the message it is about (serde names an unknown variant as sent), and a control
/// character in a header would break the NATS protocol (async-nats panics on CR or LF).
pub(crate) fn header_text(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let plain = c == ' ' || c.is_ascii_graphic();
            plain
                .then_some(c)
                .into_iter()
                .chain((!plain).then(|| c.escape_default()).into_iter().flatten())
        })
        .take(500)
        .collect()
}

/// Watches JetStream's advisory for messages of this consumer that reached `max_deliver`
/// without an acknowledgement (their handler's process kept dying), and moves them to
/// `DEAD_LETTERS` too. Every replica watches; the message id keeps one copy.
pub(super) async fn watch_max_deliveries(origin: Origin, client: async_nats::Client) {
    let subject = format!(
        "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{}.{}",
        origin.stream, origin.consumer
    );
    let mut advisories = match client.subscribe(subject).await {
        Ok(advisories) => advisories,
        Err(error) => return tracing::warn!(%error, "cannot watch max-deliveries advisories"),
    };
    while let Some(advisory) = advisories.next().await {
        let advisory: serde_json::Value =
            serde_json::from_slice(&advisory.payload).unwrap_or_default();
        let Some(sequence) = advisory["stream_seq"].as_u64() else {
            continue;
        };
        let attempts = advisory["deliveries"]
            .as_i64()
            .unwrap_or(origin.max_deliver);
        let moved = async {
            let stream = origin.js.get_stream(&origin.stream).await?;
            let message = stream.get_raw_message(sequence).await?;
            let reason = format!("its handler never finished in {attempts} deliveries");
            let letter = DeadLetter {
                subject: &message.subject,
                payload: &message.payload,
                reason: &reason,
                attempts,
            };
            dead_letter(&origin, sequence, &letter).await?;
            stream.delete_message(sequence).await?;
            anyhow::Ok(())
        };
        if let Err(error) = moved.await {
            tracing::debug!(%error, sequence, "max-deliveries advisory: message already moved or gone");
        }
    }
}

/// 100 ms, 200 ms, 400 ms, ... up to 5 s between attempts.
pub(super) fn retry_delay(attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_five_seconds() {
        let delays: Vec<u128> = (1..=9).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn malformed_messages_die_at_once_failing_ones_after_ten_tries_and_unavailable_ones_wait() {
        let malformed = Err(HandlerError::bad_request("bad"));
        assert_eq!(
            dispose(malformed, 1, 100),
            Disposition::DeadLetter("bad".into())
        );
        assert_eq!(dispose(Ok(()), 100, 100), Disposition::Ack);
        assert_eq!(
            dispose(Err(HandlerError::internal("x")), 3, 100),
            Disposition::Retry(retry_delay(3))
        );
        assert!(matches!(
            dispose(Err(HandlerError::internal("x")), 10, 100),
            Disposition::DeadLetter(_)
        ));
        assert_eq!(
            dispose(Err(HandlerError::unavailable("db")), 50, 100),
            Disposition::Retry(retry_delay(50))
        );
        assert!(matches!(
            dispose(Err(HandlerError::unavailable("db")), 100, 100),
            Disposition::DeadLetter(_)
        ));
        assert_eq!(
            dispose(Err(HandlerError::unavailable("db")), 500, -1),
            Disposition::Retry(retry_delay(500))
        );
    }

    #[test]
    fn a_reason_becomes_one_line_of_printable_ascii_of_at_most_500_characters() {
        assert_eq!(
            header_text("unknown variant `a\rb\nc\u{7f}é`, expected x"),
            "unknown variant `a\\rb\\nc\\u{7f}\\u{e9}`, expected x"
        );
        let long = header_text(&"é".repeat(1000));
        assert_eq!(long.len(), 500);
        assert!(long.bytes().all(|b| b.is_ascii_graphic()));
    }
}
