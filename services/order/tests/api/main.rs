//! The order service over real HTTP and JetStream, with the user and product services, against
//! a real PostgreSQL and a real nats-server.

mod admin;
mod contract;
mod dead_letters;
mod helpers;
mod idempotency;
mod saga;
mod sweeper;
