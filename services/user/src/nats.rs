//! The user service's NATS endpoints: `user.cmd.create|update|delete` and `user.query.get`.

use kit::nats::{HandlerError, Handlers};
use shared::{
    subject,
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
