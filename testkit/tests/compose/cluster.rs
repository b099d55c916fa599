//! compose.cluster.yml, the three-node NATS cluster option, checked statically on top of
//! compose.yml: three nodes that route to each other, each with its name, its configuration and
//! its own store; services that list every node and keep three copies of each stream; and
//! secrets.sh writing the route password it needs.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{
    SERVICES, assert_no_problems,
    model::{
        compose, compose_file, environment, mounts, read, root, schema_errors, service, strings,
    },
    repository::{nats_config_files_from, nats_environment_variables_of},
};

const NODES: [&str; 3] = ["nats", "nats-2", "nats-3"];

fn cluster() -> Value {
    compose_file("compose.cluster.yml")
}

#[test]
fn the_cluster_option_is_valid_against_the_compose_specification_schema() {
    assert_no_problems(
        "compose.cluster.yml against the Compose specification",
        schema_errors(&cluster()),
    );
}

#[test]
fn three_nats_nodes_of_the_same_image_route_to_each_other_each_with_its_name_and_own_store() {
    let (base, cluster) = (compose(), cluster());
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    let cluster_config = nats_environment_variables_of("nats-cluster.conf");
    for node in NODES {
        let overlay = service(&cluster, node);
        // `nats` is compose.yml's, with the overlay on top: its environment merged by key and
        // its mounts by target, as compose merges them.
        let mut env = if node == "nats" {
            environment(service(&base, "nats"))
        } else {
            Default::default()
        };
        env.extend(environment(overlay));
        let mut all_mounts = if node == "nats" {
            mounts(service(&base, "nats"))
        } else {
            Vec::new()
        };
        all_mounts.extend(mounts(overlay));

        if overlay["image"] != service(&base, "nats")["image"] {
            problems.push(format!(
                "`{node}` runs another image than compose.yml's nats"
            ));
        }
        let command = strings(&overlay["command"]);
        if !command
            .windows(2)
            .any(|w| w == ["-c", "/etc/nats/nats-cluster.conf"])
        {
            problems.push(format!(
                "`{node}` does not run nats-cluster.conf: {command:?}"
            ));
        }
        for file in nats_config_files_from("nats-cluster.conf") {
            let target = format!("/etc/nats/{file}");
            if !all_mounts.iter().any(|m| {
                m.bind && m.read_only && m.source == format!("./nats/{file}") && m.target == target
            }) {
                problems.push(format!("`{node}` does not mount ./nats/{file} at {target}"));
            }
        }
        let data: Vec<&str> = all_mounts
            .iter()
            .filter(|m| !m.bind && m.target == "/data")
            .map(|m| m.source.as_str())
            .collect();
        match data.as_slice() {
            [volume] if !names.contains(*volume) => {
                names.insert((*volume).to_owned());
            }
            other => problems.push(format!(
                "`{node}` needs a data volume of its own: {other:?}"
            )),
        }
        for variable in &cluster_config {
            if env.get(variable).is_none_or(String::is_empty) {
                problems.push(format!(
                    "`{node}` does not set {variable} (nats-cluster.conf)"
                ));
            }
        }
        let routes = env.get("NATS_ROUTES").cloned().unwrap_or_default();
        for other in NODES {
            if !routes.contains(&format!("@{other}:6222")) {
                problems.push(format!("`{node}`'s routes miss {other}: {routes}"));
            }
        }
        if env.get("NATS_CLUSTER_LISTEN").map(String::as_str) != Some("0.0.0.0:6222") {
            problems.push(format!("`{node}` takes routes elsewhere than port 6222"));
        }
        names.insert(env.get("NATS_SERVER_NAME").cloned().unwrap_or_default());
    }
    for volume in ["nats-2-data", "nats-3-data"] {
        if cluster["volumes"].get(volume).is_none() {
            problems.push(format!("volume {volume} is not declared"));
        }
    }
    assert_eq!(
        names.len(),
        2 * NODES.len(),
        "a data volume and a server name of its own for each node: {names:?}"
    );
    assert_no_problems("compose.cluster.yml's nodes", problems);
}

#[test]
fn every_service_lists_every_node_keeps_three_copies_of_each_stream_and_waits_for_the_nodes() {
    let cluster = cluster();
    let mut problems = Vec::new();
    for name in SERVICES {
        let overlay = service(&cluster, name);
        let env = environment(overlay);
        let urls: Vec<&str> = env
            .get("NATS_URL")
            .map(|urls| urls.split(',').collect())
            .unwrap_or_default();
        let wanted: Vec<String> = NODES.iter().map(|n| format!("nats://{n}:4222")).collect();
        if urls != wanted {
            problems.push(format!("`{name}` lists {urls:?}, not {wanted:?}"));
        }
        if env.get("STREAM_REPLICAS").map(String::as_str) != Some("3") {
            problems.push(format!(
                "`{name}` does not keep three copies of its streams"
            ));
        }
        for node in ["nats-2", "nats-3"] {
            if overlay["depends_on"][node]["condition"] != "service_healthy" {
                problems.push(format!("`{name}` does not wait for {node} to be healthy"));
            }
        }
    }
    assert_no_problems("compose.cluster.yml's services", problems);
}

#[test]
fn secrets_sh_writes_every_secret_the_cluster_option_requires() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("compose")).expect("compose dir");
    for file in ["compose.yml", "compose.cluster.yml", "compose/secrets.sh"] {
        std::fs::copy(root().join(file), dir.path().join(file)).expect("copy");
    }
    let status = std::process::Command::new("bash")
        .arg(dir.path().join("compose/secrets.sh"))
        .output()
        .expect("running secrets.sh");
    assert!(status.status.success(), "{status:?}");
    let written = std::fs::read_to_string(dir.path().join(".env")).expect(".env");
    let required: BTreeSet<String> = read("compose.cluster.yml")
        .split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once(":?").map(|(name, _)| name.to_owned()))
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert!(required.contains("NATS_ROUTE_PASSWORD"), "{required:?}");
    for name in required {
        assert!(
            written
                .lines()
                .any(|line| line.starts_with(&format!("{name}="))),
            "secrets.sh wrote no {name}:\n{written}"
        );
    }
}
