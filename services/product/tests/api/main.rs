//! The product service over real HTTP, against a real PostgreSQL and a real nats-server.

mod bad_input;
mod batches;
mod contract;
mod helpers;
mod queries;
mod replicas;
mod stock;
