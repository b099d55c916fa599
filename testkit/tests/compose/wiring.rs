//! compose.yml against the code and the configuration files it passes on: every variable read is
//! set, and the services, nats-server, PostgreSQL and Nginx agree on names, ports and passwords.

use crate::{
    NOT_DEPLOYED, OPTIONAL, SERVICES, assert_no_problems, is_optional,
    model::{
        can_be_empty, compose, environment, environment_of, mounts, read, require_set, root,
        service, sole_variable, strings,
    },
    repository::{
        braced_placeholders, duration_ms, nats_config_files, nats_environment_variables,
        nats_user_passwords, parse_database_url, variables_read_under,
    },
};

#[test]
fn every_variable_a_service_reads_is_set_for_it() {
    let compose = compose();
    let common = variables_read_under(&root().join("services/kit/src"));
    assert!(
        common.contains_key("HTTP_ADDR") && common.contains_key("DATABASE_URL"),
        "no HTTP_ADDR and DATABASE_URL among what services/kit/src reads: has the configuration moved? {common:?}"
    );
    let mut problems = Vec::new();
    for name in SERVICES {
        let mut reads = common.clone();
        reads.extend(variables_read_under(
            &root().join(format!("services/{name}/src")),
        ));
        reads.retain(|variable, _| !NOT_DEPLOYED.contains(&variable.as_str()));
        let environment = environment(service(&compose, name));
        for (variable, file) in reads.iter().filter(|(v, _)| !is_optional(v)) {
            require_set(&mut problems, (name, &environment), variable, file);
        }
        for (variable, why) in OPTIONAL {
            let empty_default = format!("${{{variable}:-}}");
            match environment.get(variable) {
                Some(value) if *value == empty_default => {}
                value => problems.push(format!(
                    "`{name}` should set {variable}: {empty_default:?} (optional: {why}), not {}",
                    value.map_or("leave it out".to_owned(), |v| format!("{v:?}"))
                )),
            }
        }
        for variable in environment.keys() {
            if !reads.contains_key(variable) && !is_optional(variable) {
                problems.push(format!(
                    "`{name}` sets {variable}, which its code never reads"
                ));
            }
        }
    }
    assert_no_problems("compose.yml against the services' code", problems);
}

#[test]
fn every_placeholder_of_the_nginx_template_is_set_and_the_upstreams_are_the_services() {
    let compose = compose();
    let nginx = service(&compose, "nginx");
    let environment = environment(nginx);
    let template = "nginx/templates/commerce.conf.template";
    let mut problems = Vec::new();
    if !mounts(nginx).iter().any(|m| {
        m.source == format!("./{template}")
            && m.target.starts_with("/etc/nginx/templates/")
            && m.target.ends_with(".template")
    }) {
        problems.push(format!(
            "`nginx` does not mount {template} in /etc/nginx/templates/"
        ));
    }
    let placeholders = braced_placeholders(&read(template));
    for placeholder in &placeholders {
        require_set(
            &mut problems,
            ("nginx", &environment),
            placeholder,
            template,
        );
    }
    // The image's envsubst fills exactly the template's placeholders, nothing else.
    // As compose hands it over: `$$` is one `$`.
    let filter = environment
        .get("NGINX_ENVSUBST_FILTER")
        .map_or(String::new(), |filter| filter.replace("$$", "$"));
    let filled: std::collections::BTreeSet<String> = filter
        .strip_prefix("^(")
        .and_then(|rest| rest.strip_suffix(")$"))
        .map(|names| names.split('|').map(str::to_owned).collect())
        .unwrap_or_default();
    let wanted: std::collections::BTreeSet<String> = placeholders.iter().cloned().collect();
    if filled != wanted {
        problems.push(format!(
            "NGINX_ENVSUBST_FILTER={filter:?} should be ^(...)$ of exactly the template's placeholders {wanted:?}"
        ));
    }
    for name in SERVICES {
        let variable = format!("{}_UPSTREAM", name.to_uppercase());
        let upstream = environment.get(&variable).map_or("", String::as_str);
        let addr = environment_of(&compose, name, "HTTP_ADDR");
        let expected = format!(
            "{name}:{}",
            addr.rsplit_once(':').map_or("", |(_, port)| port)
        );
        let statements: Vec<&str> = upstream.split(';').map(str::trim).collect();
        let servers: Vec<Vec<&str>> = statements
            .iter()
            .filter_map(|s| Some(s.strip_prefix("server ")?.split_whitespace().collect()))
            .collect();
        if servers.is_empty() || servers.iter().any(|s| s[0] != expected) {
            problems.push(format!(
                "{variable}={upstream:?} should have `server {expected}` only: the service, and the port of its HTTP_ADDR"
            ));
        }
        if servers.iter().any(|s| !s.contains(&"resolve"))
            || !statements.iter().any(|s| s.starts_with("zone "))
            || !statements.iter().any(|s| s.starts_with("resolver "))
        {
            problems.push(format!(
                "{variable} needs `zone`, `resolver` and `server ... resolve`: two replicas share a name, and a replica that restarts may come back with a new address"
            ));
        }
    }
    let document = environment
        .get("OPENAPI_DOCUMENT")
        .cloned()
        .unwrap_or_default();
    if !mounts(nginx)
        .iter()
        .any(|m| m.source == "./api/openapi.json" && m.target == document)
    {
        problems.push(format!(
            "OPENAPI_DOCUMENT={document:?} is not where ./api/openapi.json is mounted"
        ));
    }
    assert_no_problems("the nginx service against its template", problems);
}

#[test]
fn every_variable_the_nats_configuration_references_is_set_on_the_nats_service() {
    let compose = compose();
    let nats = service(&compose, "nats");
    let environment = environment(nats);
    let command = strings(&nats["command"]);
    let config = command
        .windows(2)
        .find(|w| w[0] == "-c" || w[0] == "--config")
        .map(|w| w[1].clone())
        .unwrap_or_else(|| panic!("the nats command {command:?} names no configuration file"));
    let config_dir = config.rsplit_once('/').map_or("", |(dir, _)| dir);
    let mut problems = Vec::new();
    for file in nats_config_files() {
        let target = format!("{config_dir}/{file}");
        if !mounts(nats)
            .iter()
            .any(|m| m.source == format!("./nats/{file}") && m.target == target)
        {
            problems.push(format!(
                "`nats` does not mount ./nats/{file} at {target}, beside {config}"
            ));
        }
    }
    for variable in nats_environment_variables() {
        require_set(
            &mut problems,
            ("nats", &environment),
            &variable,
            "nats/nats-server.conf",
        );
    }
    assert_no_problems("the nats service against nats/nats-server.conf", problems);
}

#[test]
fn each_service_logs_in_to_nats_as_its_own_user_with_the_password_nats_gives_that_user() {
    let compose = compose();
    let nats = environment(service(&compose, "nats"));
    let passwords = nats_user_passwords();
    let mut problems = Vec::new();
    for name in SERVICES {
        let environment = environment(service(&compose, name));
        let user = environment.get("NATS_USER").map_or("", String::as_str);
        let Some(config_variable) = passwords.get(user).filter(|_| user == name) else {
            problems.push(format!(
                "`{name}` logs in to NATS as {user:?}, not as its own user {name:?} of nats/permissions.conf"
            ));
            continue;
        };
        let given_to_nats = nats.get(config_variable).and_then(|v| sole_variable(v));
        let given_to_service = environment
            .get("NATS_PASSWORD")
            .and_then(|v| sole_variable(v));
        if given_to_nats.is_none() || given_to_nats != given_to_service {
            problems.push(format!(
                "`nats` takes {config_variable} from {given_to_nats:?} but `{name}` its NATS_PASSWORD from {given_to_service:?}: both must be the same one compose variable"
            ));
        }
        let url = environment.get("NATS_URL").map_or("", String::as_str);
        let expected = format!(
            "nats://nats:{}",
            nats.get("NATS_PORT").map_or("", String::as_str)
        );
        if url != expected {
            problems.push(format!(
                "`{name}` has NATS_URL={url:?}; nats-server is at {expected:?}"
            ));
        }
    }
    assert_no_problems("NATS logins", problems);
}

#[test]
fn each_service_uses_its_own_database_and_role_with_the_password_postgres_gives_that_role() {
    let compose = compose();
    let postgres = service(&compose, "postgres");
    let postgres_environment = environment(postgres);
    let mut problems = Vec::new();
    for name in SERVICES {
        let url = environment_of(&compose, name, "DATABASE_URL");
        let Some((role, password, host, database)) = parse_database_url(&url) else {
            problems.push(format!(
                "`{name}`'s DATABASE_URL={url:?} is not postgres://role:password@host:port/database"
            ));
            continue;
        };
        if role != format!("{name}_svc") || database != format!("{name}_db") {
            problems.push(format!(
                "`{name}` connects as {role:?} to {database:?}, not as {name}_svc to {name}_db"
            ));
        }
        if host != "postgres:5432" {
            problems.push(format!(
                "`{name}` connects to {host:?}, not to the postgres service (postgres:5432)"
            ));
        }
        let init_variable = format!("{}_DB_PASSWORD", name.to_uppercase());
        let given_to_postgres = postgres_environment
            .get(&init_variable)
            .and_then(|v| sole_variable(v));
        if given_to_postgres.is_none() || given_to_postgres != sole_variable(&password) {
            problems.push(format!(
                "`postgres` takes {init_variable} from {given_to_postgres:?} but `{name}`'s DATABASE_URL has the password {password:?}: both must be the same one compose variable"
            ));
        }
    }
    let script = "compose/postgres-init.sh";
    let text = read(script);
    for expected in [
        "for service in user product order",
        "${service}_svc",
        "${service}_db",
        "${service^^}_DB_PASSWORD",
        "revoke connect on database postgres, template1 from public",
    ] {
        if !text.contains(expected) {
            problems.push(format!(
                "{script} no longer has `{expected}`, which this test relies on"
            ));
        }
    }
    if !mounts(postgres).iter().any(|m| {
        m.source == format!("./{script}")
            && m.target.starts_with("/docker-entrypoint-initdb.d/")
            && m.target.ends_with(".sh")
    }) {
        problems.push(format!(
            "`postgres` does not mount {script} as a .sh in /docker-entrypoint-initdb.d/"
        ));
    }
    assert_no_problems("database roles", problems);
}

#[test]
fn a_value_that_may_be_empty_is_told_from_one_that_cannot() {
    for (value, empty) in [
        ("${A}", true),
        ("${A:-}", true),
        ("${A-x}", true),
        ("${A:+x}", true),
        ("${A:-x}", false),
        ("${A:?set A}", false),
        ("x${A}", false),
        ("$$", false),
        ("", true),
    ] {
        assert_eq!(can_be_empty(value), empty, "{value:?}");
    }
}

#[test]
fn nginx_closes_an_idle_connection_to_a_replica_before_a_stopping_replica_does() {
    let template = read("nginx/templates/commerce.conf.template");
    let compose = compose();
    let mut problems = Vec::new();
    for service in SERVICES {
        let upstream = format!("upstream {service}_service {{");
        let Some(start) = template.find(&upstream) else {
            problems.push(format!("no `{upstream}` in the Nginx template"));
            continue;
        };
        let block = &template[start..start + template[start..].find("\n}").unwrap_or(0)];
        let idle = block
            .lines()
            .find_map(|line| line.trim().strip_prefix("keepalive_timeout "))
            .and_then(|value| duration_ms(value.trim_end_matches(';')));
        let drain = environment_of(&compose, service, "SHUTDOWN_DRAIN_MS")
            .parse::<u64>()
            .ok();
        match (idle, drain) {
            (Some(idle), Some(drain)) if idle < drain => {}
            _ => problems.push(format!(
                "{service}: Nginx keeps an idle connection {idle:?} ms (60 s unless set), \
                 the replica closes idle ones {drain:?} ms after SIGTERM"
            )),
        }
    }
    assert_no_problems("idle upstream connections", problems);
}
