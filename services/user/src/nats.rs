//! The user service's NATS side: `user.cmd.create|update|delete`, `user.query.get`, and the saga
//! worker that answers `user.cmd.validate` on JetStream.

use kit::{
    jetstream::{Delivery, Worker},
    nats::{HandlerError, Handlers},
};
use shared::{
    saga::{UserVerdict, ValidateUser, message_id},
    stream, subject,
    user::{DeleteUser, GetUser, UpdateUser, User, UserReply},
};

use crate::{AppState, Error, db};

/// Registers the `user` service and its endpoints.
pub async fn start(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "user",
        "Users: create, update, delete, look up",
    )
    .await?;
    let s = state.clone();
    handlers
        .add("create", subject::USER_CREATE, move |cmd| {
            create(s.clone(), cmd)
        })
        .await?;
    let s = state.clone();
    handlers
        .add("update", subject::USER_UPDATE, move |cmd| {
            update(s.clone(), cmd)
        })
        .await?;
    let s = state.clone();
    handlers
        .add("delete", subject::USER_DELETE, move |cmd| {
            delete(s.clone(), cmd)
        })
        .await?;
    handlers
        .add("get", subject::USER_GET, move |query| {
            get(state.clone(), query)
        })
        .await?;
    Ok(handlers)
}

fn found(user: Option<User>) -> UserReply {
    user.map_or(UserReply::NotFound, |user| UserReply::Ok { user })
}

async fn create(state: AppState, new: User) -> Result<UserReply, HandlerError> {
    let stored = db::insert(&state.pool, &new).await.map_err(Error::from)?;
    Ok(stored.map_or(UserReply::Conflict, |user| UserReply::Ok { user }))
}

async fn update(state: AppState, change: UpdateUser) -> Result<UserReply, HandlerError> {
    Ok(found(
        db::update(&state.pool, &change)
            .await
            .map_err(Error::from)?,
    ))
}

async fn delete(state: AppState, old: DeleteUser) -> Result<UserReply, HandlerError> {
    let deleted = db::delete_matching(&state.pool, &old)
        .await
        .map_err(Error::from)?;
    Ok(if deleted {
        UserReply::Deleted
    } else {
        UserReply::NotFound
    })
}

async fn get(state: AppState, query: GetUser) -> Result<UserReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}

/// Starts the `user-validate` saga worker: tells the order saga whether a buyer exists.
pub async fn start_saga(state: AppState) -> anyhow::Result<Worker> {
    kit::jetstream::ensure_stream(&state.js, &stream::USER_SAGA).await?;
    let consumer = kit::jetstream::consumer(&state.js, &stream::USER_VALIDATE).await?;
    Ok(Worker::spawn(consumer, move |delivery| {
        validate(state.clone(), delivery)
    }))
}

/// `user.cmd.validate`: publishes `user.evt.validated` or `user.evt.rejected`. Reads only, so a
/// redelivery is harmless; the saga keeps the first verdict it records.
async fn validate(state: AppState, delivery: Delivery<ValidateUser>) -> Result<(), HandlerError> {
    let request = delivery.payload;
    let valid = db::exists(&state.pool, request.user_id)
        .await
        .map_err(Error::from)?;
    let verdict = UserVerdict {
        order_id: request.order_id,
        user_id: request.user_id,
        valid,
    };
    let subject = if valid {
        subject::USER_VALIDATED
    } else {
        subject::USER_REJECTED
    };
    let id = message_id("user-verdict", request.order_id);
    kit::jetstream::publish(&state.js, subject, &id, &verdict)
        .await
        .map_err(|error| HandlerError::unavailable(error.to_string()))
}

/// Operator reset: pending validations go, then every user.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::USER_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
