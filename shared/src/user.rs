//! Payloads of the `user.*` subjects.

use serde::{Deserialize, Serialize};

/// A user as the user service stores it; also the payload of `user.cmd.create`.
///
/// The password never travels in clear: the HTTP layer hashes it first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Client-chosen id, unique.
    pub id: i32,
    /// Non-empty.
    pub username: String,
    /// Non-empty.
    pub email: String,
    /// SHA-256 of the password as 64 upper-case hex digits (the REST contract's own, unsalted, hash).
    pub password_sha256: String,
}

/// Payload of `user.cmd.update`: the fields that are `Some` replace the stored ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateUser {
    /// The user to update.
    pub id: i32,
    /// New username, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// New email, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// New password hash, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_sha256: Option<String>,
}

/// Payload of `user.cmd.delete`: the user is deleted only if every field matches the stored record.
pub type DeleteUser = User;

/// Payload of `user.query.get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetUser {
    /// The user to read.
    pub id: i32,
}

/// Reply to every `user.cmd.*` command and `user.query.get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UserReply {
    /// The user as stored after the command (create, update, get).
    Ok {
        /// The stored record.
        user: User,
    },
    /// The user was deleted.
    Deleted,
    /// No such user, or (for delete) the given fields did not match.
    NotFound,
    /// A user with this id already exists (create).
    Conflict,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_tagged_by_outcome_in_snake_case() {
        let json = serde_json::to_string(&UserReply::NotFound).unwrap();
        assert_eq!(json, r#"{"outcome":"not_found"}"#);
        let back: UserReply = serde_json::from_str(r#"{"outcome":"deleted"}"#).unwrap();
        assert_eq!(back, UserReply::Deleted);
    }

    #[test]
    fn an_update_leaves_out_the_fields_it_does_not_change() {
        let update = UpdateUser {
            id: 7,
            username: None,
            email: Some("e@x".into()),
            password_sha256: None,
        };
        assert_eq!(
            serde_json::to_string(&update).unwrap(),
            r#"{"id":7,"email":"e@x"}"#
        );
    }
}
