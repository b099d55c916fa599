//! The deadline sweeper: no order stays pending forever, and no rejected order keeps stock.
//!
//! Every replica sweeps; each claims rows with `FOR UPDATE SKIP LOCKED`, so an order is handled
//! by one replica at a time. Past the first deadline a pending order's missing verdicts are
//! requested again (the handlers are idempotent); past the final one it is rejected and its
//! stock released. A rejected order whose release has not been confirmed gets it sent again.

use std::time::{SystemTime, UNIX_EPOCH};

use shared::{
    saga::{OrderState, ValidateUser, message_id},
    subject,
};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{AppState, config::Deadlines, db};

/// Orders claimed per sweep and kind.
const BATCH: i64 = 100;

/// Sweeps every `deadlines.sweep_every` until `stop`.
pub async fn run(state: AppState, deadlines: Deadlines, stop: CancellationToken) {
    let mut every = tokio::time::interval(deadlines.sweep_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        // A pass that panics (a bug; `caught` logs it) fails alone, as a handler would; the
        // next tries again.
        if let Ok(Err(error)) = kit::panics::caught(sweep(&state, &deadlines)).await {
            tracing::warn!(error = ?error, "sweep failed; trying again next time");
        }
    }
}

/// One pass: pending orders first, then unconfirmed releases.
pub async fn sweep(state: &AppState, deadlines: &Deadlines) -> anyhow::Result<()> {
    let mut lease = state.pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *lease).await?;
    let stale = db::claim_stale(&mut tx, deadlines.redrive_after, BATCH).await?;
    let cutoff = OffsetDateTime::now_utc() - deadlines.reject_after;
    let (expired, redriven): (Vec<db::Order>, Vec<db::Order>) =
        stale.into_iter().partition(|o| o.created_at < cutoff);
    let ids = |orders: &[db::Order]| orders.iter().map(|o| o.id).collect::<Vec<_>>();
    db::expire(&mut tx, &ids(&expired)).await?;
    db::touch(&mut tx, &ids(&redriven)).await?;
    let unreleased = db::claim_unreleased(&mut tx, deadlines.redrive_after, BATCH).await?;
    db::touch(&mut tx, &ids(&unreleased)).await?;
    tx.commit().await?;
    lease.release();
    // As `db::expire` left them; counted now, whatever becomes of the publishes below.
    let decided_at = OffsetDateTime::now_utc();
    let expired: Vec<db::Order> = expired
        .into_iter()
        .map(|order| db::Order {
            state: OrderState::Rejected.as_str().to_owned(),
            reason: None,
            updated_at: decided_at,
            ..order
        })
        .collect();
    for order in &expired {
        state.saga.decided(order);
    }
    if redriven.is_empty() && expired.is_empty() && unreleased.is_empty() {
        return Ok(());
    }
    // What the sweep sends goes in a trace of its own (the orders' first traces are not kept).
    let span = tracing::info_span!(
        "sweep",
        otel.kind = "internal",
        trace_id = tracing::field::Empty
    );
    kit::telemetry::new_trace(&span);
    send(state, &redriven, &expired, &unreleased)
        .instrument(span)
        .await
}

/// Published after the commit: a crash in between leaves the orders to the next sweep.
async fn send(
    state: &AppState,
    redriven: &[db::Order],
    expired: &[db::Order],
    unreleased: &[db::Order],
) -> anyhow::Result<()> {
    let round = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for order in redriven {
        tracing::warn!(order_id = %order.id, "order still pending; asking again for its verdicts");
        if order.user_valid.is_none() {
            let validate = ValidateUser {
                order_id: order.id,
                user_id: order.user_id,
            };
            let id = format!("{}:{round}", message_id("validate", order.id));
            kit::jetstream::publish(&state.js, subject::USER_VALIDATE, &id, &validate).await?;
        }
        if order.stock.is_none() {
            let id = format!("{}:{round}", message_id("reserve", order.id));
            kit::jetstream::publish(
                &state.js,
                subject::PRODUCT_RESERVE,
                &id,
                &order.stock_request(),
            )
            .await?;
        }
    }
    for order in expired {
        tracing::warn!(order_id = %order.id, "order outlived its final deadline; rejecting it");
        let Some(outcome) = order.outcome() else {
            continue;
        };
        kit::jetstream::publish(
            &state.js,
            subject::ORDER_REJECTED,
            &message_id("outcome", order.id),
            &outcome,
        )
        .await?;
        if let Some(waiting) = &order.notify {
            crate::saga::notify(state, &tracing::Span::current(), waiting, &outcome).await;
        }
    }
    // Expired orders may hold stock, or may yet be given some by a late reserve: release either
    // way (a release before its reserve leaves a mark that makes the reserve take nothing).
    for order in expired.iter().chain(unreleased) {
        let id = format!("{}:{round}", message_id("release", order.id));
        kit::jetstream::publish(
            &state.js,
            subject::PRODUCT_RELEASE,
            &id,
            &order.stock_request(),
        )
        .await?;
    }
    Ok(())
}
