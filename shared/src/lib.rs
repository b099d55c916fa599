//! Message contracts between the services: the NATS subjects and the JSON payloads carried on them.
//!
//! This crate does no I/O. Every service serialises what it sends and deserialises what it
//! receives with these types, so a change to a payload is a change here, seen by all sides.

pub mod admin;
pub mod error;
pub mod order;
pub mod product;
pub mod saga;
pub mod stream;
pub mod subject;
pub mod user;
