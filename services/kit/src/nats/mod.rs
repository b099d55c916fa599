//! NATS plumbing: connecting, sending a typed command and waiting for its reply
//! ([`request`]), serving services-API endpoints with typed handlers ([`Handlers`]), and each
//! replica's [`Rank`] among its service's replicas.

mod rank;
mod request;
mod serve;

use async_nats::{Client, ConnectOptions};
use futures::StreamExt;

pub use rank::Rank;
pub use request::{RequestError, Timing, request};
pub use serve::{Command, HandlerError, Handlers, Serving, answer_each, serve, serve_batched};
pub(crate) use serve::{caught, payload};

use crate::config::Common;

/// Connects to NATS as `name`. The connection retries in the background, forever: a service
/// starts (and reports not ready) while NATS is down, and recovers when it returns.
pub async fn connect(config: &Common, name: &str) -> anyhow::Result<Client> {
    let mut options = ConnectOptions::new()
        .name(name)
        // Replies to this service come under its own prefix, the only inboxes its NATS user
        // may subscribe to (nats/permissions.conf).
        .custom_inbox_prefix(format!("_INBOX.{name}"))
        // async-nats logs every connection event itself, at info; a server error (say, a
        // permissions violation naming what nats/permissions.conf does not allow) is worth more.
        .event_callback(|event| async move {
            if let async_nats::Event::ServerError(error) = event {
                tracing::error!(%error, "NATS server error");
            }
        })
        .retry_on_initial_connect()
        .max_reconnects(None)
        .request_timeout(Some(config.nats_request_timeout));
    if let Some((user, password)) = &config.nats_credentials {
        options = options.user_and_password(user.clone(), password.clone());
    }
    Ok(options.connect(config.nats_servers.0.clone()).await?)
}

/// Returns once the server has processed everything this client sent before the call.
///
/// `Client::flush` only empties the socket buffer; this sends a message to a fresh inbox of our
/// own and waits for it to come back, which the server does in order on this connection.
pub async fn round_trip(client: &Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    tokio::time::timeout(std::time::Duration::from_secs(2), echo.next())
        .await
        .map_err(|_| anyhow::anyhow!("no echo from the NATS server within 2 s"))?;
    Ok(())
}
