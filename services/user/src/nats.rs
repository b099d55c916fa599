//! The user service's NATS side: `user.cmd.create|update|delete`, `user.query.get`, and the saga
//! worker that answers `user.cmd.validate` on JetStream.

use std::collections::{HashMap, HashSet};

use kit::{
    jetstream::{Delivery, Outbox, Worker},
    nats::{Command, HandlerError, Handlers, Rank},
};
use shared::{
    saga::{UserVerdict, ValidateUser, message_id},
    stream, subject,
    user::{DeleteUser, GetUser, UpdateUser, User, UserReply},
};

use uuid::Uuid;

use crate::{AppState, Error, db};

/// Registers the `user` service and its endpoints. Commands are handled in batches of those
/// that arrive together, each batch committed at once.
pub async fn start(state: AppState) -> anyhow::Result<Handlers> {
    let mut handlers = Handlers::start(
        &state.nats,
        "user",
        "Users: create, update, delete, look up",
        state.database.clone(),
        state.metrics.clone(),
    )
    .await?;
    let s = state.clone();
    handlers
        .add_batched(
            "create",
            subject::USER_CREATE,
            "Create a user (id, username, email, password)",
            move |batch| create(s.clone(), batch),
        )
        .await?;
    let s = state.clone();
    handlers
        .add_batched(
            "update",
            subject::USER_UPDATE,
            "Change some fields of a user",
            move |batch| update(s.clone(), batch),
        )
        .await?;
    let s = state.clone();
    handlers
        .add_batched(
            "delete",
            subject::USER_DELETE,
            "Delete a user whose credentials match",
            move |batch| delete(s.clone(), batch),
        )
        .await?;
    handlers
        .add(
            "get",
            subject::USER_GET,
            "One user by id",
            move |query, _| get(state.clone(), query),
        )
        .await?;
    Ok(handlers)
}

fn found(user: Option<User>) -> UserReply {
    user.map_or(UserReply::NotFound, |user| UserReply::Ok { user })
}

/// What the commands of `commands` not in `done` answered when they first ran, by command id:
/// a command that did nothing is a repeat (or lost a race to its own first copy), and answers
/// what that first run answered.
async fn earlier<T>(
    state: &AppState,
    commands: &[Command<T>],
    done: &HashSet<Uuid>,
) -> Result<HashMap<Uuid, String>, Error> {
    let others: Vec<Uuid> = commands
        .iter()
        .map(|command| command.id)
        .filter(|id| !done.contains(id))
        .collect();
    if others.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(db::outcomes(&state.pool, &others)
        .await?
        .into_iter()
        .collect())
}

async fn create(
    state: AppState,
    batch: Vec<Command<User>>,
) -> Vec<Result<UserReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |user| user.id,
        |commands| create_each(state.clone(), commands),
    )
    .await
}

async fn create_each(
    state: AppState,
    commands: Vec<Command<User>>,
) -> Result<Vec<UserReply>, HandlerError> {
    let rows: Vec<(&User, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let created: HashSet<Uuid> = db::insert(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &created).await?;
    Ok(commands
        .into_iter()
        .map(|command| {
            // A repeat of a create that succeeded: it stored exactly these fields.
            let ok = created.contains(&command.id)
                || earlier.get(&command.id).is_some_and(|o| o == "ok");
            if ok {
                UserReply::Ok {
                    user: command.payload,
                }
            } else {
                UserReply::Conflict
            }
        })
        .collect())
}

async fn update(
    state: AppState,
    batch: Vec<Command<UpdateUser>>,
) -> Vec<Result<UserReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |change| change.id,
        |commands| update_each(state.clone(), commands),
    )
    .await
}

async fn update_each(
    state: AppState,
    commands: Vec<Command<UpdateUser>>,
) -> Result<Vec<UserReply>, HandlerError> {
    let rows: Vec<(&UpdateUser, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let mut updated: HashMap<Uuid, User> = db::update(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &updated.keys().copied().collect()).await?;
    // A repeat of an update that succeeded answers the user as it stands now.
    let repeated =
        |command: &Command<UpdateUser>| earlier.get(&command.id).is_some_and(|o| o == "ok");
    let again: Vec<i32> = commands
        .iter()
        .filter(|c| repeated(c))
        .map(|c| c.payload.id)
        .collect();
    let mut current: HashMap<i32, User> = HashMap::new();
    if !again.is_empty() {
        let users = db::find_many(&state.pool, &again)
            .await
            .map_err(Error::from)?;
        current.extend(users.into_iter().map(|user| (user.id, user)));
    }
    Ok(commands
        .iter()
        .map(|command| match updated.remove(&command.id) {
            Some(user) => UserReply::Ok { user },
            None if repeated(command) => found(current.get(&command.payload.id).cloned()),
            None => UserReply::NotFound,
        })
        .collect())
}

async fn delete(
    state: AppState,
    batch: Vec<Command<DeleteUser>>,
) -> Vec<Result<UserReply, HandlerError>> {
    kit::nats::answer_each(
        batch,
        |old| old.id,
        |commands| delete_each(state.clone(), commands),
    )
    .await
}

async fn delete_each(
    state: AppState,
    commands: Vec<Command<DeleteUser>>,
) -> Result<Vec<UserReply>, HandlerError> {
    let rows: Vec<(&DeleteUser, Uuid)> = commands.iter().map(|c| (&c.payload, c.id)).collect();
    let deleted: HashSet<Uuid> = db::delete_matching(&state.pool, &rows)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let earlier = earlier(&state, &commands, &deleted).await?;
    Ok(commands
        .iter()
        .map(|command| {
            let gone = deleted.contains(&command.id)
                || earlier.get(&command.id).is_some_and(|o| o == "deleted");
            if gone {
                UserReply::Deleted
            } else {
                UserReply::NotFound
            }
        })
        .collect())
}

async fn get(state: AppState, query: GetUser) -> Result<UserReply, HandlerError> {
    Ok(found(
        db::find(&state.pool, query.id).await.map_err(Error::from)?,
    ))
}

/// Starts the `user-validate` saga worker, pulling at `rank`: tells the order saga whether a
/// buyer exists. Streams it creates get `replicas` copies (`STREAM_REPLICAS`).
pub async fn start_saga(state: AppState, replicas: usize, rank: &Rank) -> anyhow::Result<Worker> {
    kit::jetstream::ensure_stream(&state.js, &stream::USER_SAGA, replicas).await?;
    let consumer = kit::jetstream::consumer(&state.js, &stream::USER_VALIDATE, replicas).await?;
    let js = state.js.clone();
    Ok(Worker::spawn(
        &js,
        consumer,
        &state.metrics.clone(),
        rank,
        move |batch| validate(state.clone(), batch),
    ))
}

/// A batch of `user.cmd.validate`: one lookup for all, then `user.evt.validated` or
/// `user.evt.rejected` for each. Reads only, so a redelivery is harmless; the saga keeps the
/// first verdict it records.
async fn validate(state: AppState, batch: Vec<Delivery<ValidateUser>>) -> Result<(), HandlerError> {
    let ids: Vec<i32> = batch.iter().map(|d| d.payload.user_id).collect();
    let existing: HashSet<i32> = db::existing(&state.pool, &ids)
        .await
        .map_err(Error::from)?
        .into_iter()
        .collect();
    let mut outbox = Outbox::new(&state.js);
    for delivery in &batch {
        let request = delivery.payload;
        let valid = existing.contains(&request.user_id);
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
        outbox.send(&delivery.span, subject, &id, &verdict).await;
    }
    outbox
        .stored()
        .await
        .map_err(|error| HandlerError::unavailable(error.to_string()))
}

/// Operator reset: pending validations go, then every user.
pub async fn reset(state: AppState) -> anyhow::Result<()> {
    kit::admin::purge(&state.js, &[stream::USER_SAGA.name]).await?;
    Ok(db::delete_everything(&state.pool).await?)
}
