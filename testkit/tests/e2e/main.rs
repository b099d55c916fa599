//! End to end: the whole native stack, started by `./stack up`'s own code, driven through Nginx.

mod degradation;
mod hostile;
mod hosts;
mod lifecycle;
mod metrics;
mod nats_services;
mod nats_trail;
mod nginx_bounds;
mod openapi;
mod orders;
mod permissions;
mod private_checkout;
mod schemathesis;
mod shutdown;
mod through_nginx;
mod traces;
