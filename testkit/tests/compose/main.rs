//! The compose deployment, checked statically (no Docker here): compose.yml against the Compose
//! specification's schema, and against what the rest of the repository expects of it: the
//! variables each service reads, the placeholders of the Nginx template and of nats-server.conf,
//! the NATS users and database roles, replicas, healthchecks, ports, volumes, and the Dockerfile.

mod cluster;
mod model;
mod repository;
mod topology;
mod wiring;

const SERVICES: [&str; 3] = ["user", "product", "order"];

/// Variables a service runs without on purpose. compose.yml still lists each, with an empty
/// default (`${NAME:-}`), so that an operator sees it and can set it.
const OPTIONAL: [(&str, &str); 3] = [
    ("ADMIN_TOKEN", "unset turns POST /admin/* off"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "unset exports no spans"),
    (
        "DB_POOL_MAX",
        "unset sizes the pool to the container's cores",
    ),
];

/// Variables the services' code reads that are no deployment's business.
const NOT_DEPLOYED: [&str; 1] = [
    "TEST_LOG", // kit::telemetry::init_for_tests
];

fn is_optional(variable: &str) -> bool {
    OPTIONAL.iter().any(|(name, _)| *name == variable)
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{what}:\n  - {}",
        problems.join("\n  - ")
    );
}
