//! NATS subject names, `<owner>.<kind>.<name>`: the owner handles the commands and queries on it.
//!
//! `nats/README.md` is the catalog for people; these constants are the catalog for code.

/// Create a user; request/reply, payload [`crate::user::User`], reply [`crate::user::UserReply`].
pub const USER_CREATE: &str = "user.cmd.create";
/// Update some fields of a user; payload [`crate::user::UpdateUser`].
pub const USER_UPDATE: &str = "user.cmd.update";
/// Delete a user whose credentials match; payload [`crate::user::DeleteUser`].
pub const USER_DELETE: &str = "user.cmd.delete";
/// Read one user; payload [`crate::user::GetUser`].
pub const USER_GET: &str = "user.query.get";

/// Create a product; request/reply, payload [`crate::product::Product`], reply [`crate::product::ProductReply`].
pub const PRODUCT_CREATE: &str = "product.cmd.create";
/// Update some fields of a product; payload [`crate::product::UpdateProduct`].
pub const PRODUCT_UPDATE: &str = "product.cmd.update";
/// Delete a product whose fields match; payload [`crate::product::DeleteProduct`].
pub const PRODUCT_DELETE: &str = "product.cmd.delete";
/// Read one product; payload [`crate::product::GetProduct`].
pub const PRODUCT_GET: &str = "product.query.get";
