//! JetStream for the saga: streams and consumers from their definitions in `nats/`, messages
//! published with a message id and stored before anything is acknowledged, and consumers that
//! take what is ready in batches, each acknowledged only once its handler succeeded.

mod dead_letter;
mod publish;
mod setup;
mod worker;

pub(crate) use dead_letter::header_text;
pub use publish::{Outbox, PublishError, publish};
pub use setup::{consumer, ensure_stream};
pub use worker::{Delivery, Worker};
