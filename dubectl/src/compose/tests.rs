//! The conversion of real compose files (tests/compose/, see its README for
//! their sources), each to the exact pods and the exact list of unmapped keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dubernetes_api::{CheckKind, EnvValue, Expose};

use super::interpolate::interpolate;
use super::service::{http_probe, parse_short_port};
use super::values::{binary_size, duration};
use super::*;

/// Converts `text` with these files beside it and this environment.
fn run(text: &str, files: &[(&str, &str)], env: &[(&str, &str)]) -> anyhow::Result<Conversion> {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(name, text)| (Path::new("/project").join(name), text.to_string()))
        .collect();
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let lookup = move |name: &str| env.get(name).cloned();
    let read = move |path: &Path| {
        files
            .get(path)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    };
    let source = Source {
        dir: PathBuf::from("/project"),
        env: &lookup,
        read: &read,
    };
    convert(text, &source, &Options::default())
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/compose")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unmapped_list(c: &Conversion) -> Vec<String> {
    c.unmapped.iter().map(|u| format!("{}: {}", u.path, u.reason)).collect()
}

/// The YAML and the unmapped keys' paths, printed when they differ (to update the expectations).
fn check(c: &Conversion, yaml: &str, unmapped: &[&str]) {
    let got = to_yaml(c).expect("yaml");
    let paths: Vec<&str> = c.unmapped.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(got, yaml, "YAML:\n{got}\nunmapped: {:#?}", unmapped_list(c));
    assert_eq!(paths, unmapped, "unmapped: {:#?}", unmapped_list(c));
    // What convert prints, apply reads back as the same pods.
    let back = dubernetes_api::parse_specs(&got).expect("the output parses as pods");
    let specs: Vec<&PodSpec> = c.pods.iter().map(|p| &p.spec).collect();
    assert_eq!(back.iter().collect::<Vec<_>>(), specs);
}

const WEB_ENV: &str = "# comment\nexport TZ=UTC\nDATABASE_URL=overridden\nQUOTED=\"a b\"\n";

/// docker/awesome-compose wordpress-mysql: everything maps (named volumes, expose, restart: always, the HTTP port).
#[test]
fn awesome_compose_wordpress_mysql() {
    let c = run(
        &fixture("wordpress-mysql.yaml"),
        &[("web.env", WEB_ENV)],
        &[("FROM_SHELL", "yes"), ("SHOP_API_KEY", "k")],
    )
    .expect("convert");
    check(
        &c,
        r#"---
# compose service db
# volume "db_data" is named "db-data" (a DNS label)
# expose: port 33060 needs nothing: other pods reach db:33060 on the instance network
name: db
image: mariadb:10.6.4-focal
replicas: 1
port: 3306
env:
  MYSQL_DATABASE: wordpress
  MYSQL_PASSWORD: wordpress
  MYSQL_ROOT_PASSWORD: somewordpress
  MYSQL_USER: wordpress
args:
- --default-authentication-plugin=mysql_native_password
volumes:
- name: db-data
  path: /var/lib/mysql
---
# compose service wordpress
# ports: container port 80 (published on 80 by compose) is served by the ingress as http://wordpress.localhost/
name: wordpress
image: wordpress:latest
replicas: 1
port: 80
env:
  WORDPRESS_DB_HOST: db
  WORDPRESS_DB_NAME: wordpress
  WORDPRESS_DB_PASSWORD: wordpress
  WORDPRESS_DB_USER: wordpress
access:
  host: wordpress.localhost
"#,
        &[],
    );
}

/// The postgres image's docs: the db's port comes from its image; shm_size does not map.
#[test]
fn postgres_image_docs_stack() {
    let c = run(
        &fixture("postgres.yaml"),
        &[("web.env", WEB_ENV)],
        &[("FROM_SHELL", "yes"), ("SHOP_API_KEY", "k")],
    )
    .expect("convert");
    check(
        &c,
        r#"---
# compose service db
# port 5432: what the image postgres listens on (no ports in the compose file)
name: db
image: postgres
replicas: 1
port: 5432
env:
  POSTGRES_PASSWORD: example
---
# compose service adminer
# ports: container port 8080 (published on 8080 by compose) is served by the ingress as http://adminer.localhost/
name: adminer
image: adminer
replicas: 1
port: 8080
access:
  host: adminer.localhost
"#,
        &["services.db.shm_size"],
    );
}

/// docker/awesome-compose flask-redis: redis's published TCP port becomes an `expose` entry on
/// 127.0.0.1; the web service has only `build` (no pod), a bind mount and a stop signal.
#[test]
fn awesome_compose_flask_redis() {
    let c = run(&fixture("flask-redis.yaml"), &[], &[]).expect("convert");
    check(
        &c,
        r#"---
# compose service redis
# ports: container port 6379 (published on 6379 by compose, on every interface; here on 127.0.0.1 only: write listen: "0.0.0.0:6379" to accept other machines) is exposed as TCP on 127.0.0.1:6379 through the ingress
name: redis
image: redislabs/redismod
replicas: 1
port: 6379
expose:
- port: 6379
  listen: 127.0.0.1:6379
"#,
        &[
            "services.web.build",
            "services.web.stop_signal",
            "services.web.volumes[0]",
        ],
    );
}

/// docker/awesome-compose react-express-mysql: a secret from a file as secret_files; backend and
/// frontend have only `build` (no pod), bind mounts, an anonymous volume and separate networks.
#[test]
fn awesome_compose_react_express_mysql() {
    let c = run(
        &fixture("react-express-mysql.yaml"),
        &[("web.env", WEB_ENV)],
        &[("FROM_SHELL", "yes"), ("SHOP_API_KEY", "k")],
    )
    .expect("convert");
    check(
        &c,
        r#"---
# compose service db
# secrets: create them first: dubectl create secret generic db-secrets --from-file=db-password=db/password.txt
# port 3306: what the image mariadb:10.6.4-focal listens on (no ports in the compose file)
name: db
image: mariadb:10.6.4-focal
replicas: 1
port: 3306
env:
  MYSQL_DATABASE: example
  MYSQL_ROOT_PASSWORD_FILE: /run/secrets/db-password
secret_files:
- secret: db-secrets
  path: /run/secrets
args:
- --default-authentication-plugin=mysql_native_password
volumes:
- name: db-data
  path: /var/lib/mysql
"#,
        &[
            "services.backend.build",
            "services.backend.volumes[0]",
            "services.backend.volumes[1]",
            "services.backend.volumes[2]",
            "services.backend.networks",
            "services.db.networks",
            "services.frontend.build",
            "services.frontend.volumes[0]",
            "services.frontend.volumes[1]",
            "services.frontend.networks",
        ],
    );
}

/// The pods of tests/compose/full.yaml.
const FULL_PODS: &str = r#"---
# compose service web_app
# pod name "web-app": the service name "web_app" made a DNS label; other services reach it by the new name
# secrets: create them first: dubectl create secret generic web-app-secrets --from-literal=api_key="$SHOP_API_KEY"
# depends_on: db (service_healthy), cache (service_started) (an order Dubernetes does not keep: pods start together; a pod's name resolves once it has a ready replica, and a replica that exits is restarted with back-off)
# ports: container port 8080 (published on 8000 by compose) is served by the ingress as http://web-app.localhost/
# healthcheck.start_period: not needed: a replica that has not passed its check yet is only not ready (never restarted for it)
name: web-app
image: registry.example.com/shop/web:1.4.2
replicas: 3
port: 8080
env:
  DATABASE_URL: postgres://shop@db:5432/shop
  DEBUG: 'false'
  FROM_SHELL: yes
  QUOTED: a b
  TZ: UTC
  WORKERS: '4'
secret_files:
- secret: web-app-secrets
  path: /run/secrets
pull: if-not-present
command:
- /app/server
args:
- --listen
- :8080
- --log-level
- info
resources:
  memory: 256Mi
  cpus: 0.5
  pids: 200
health:
  type: http
  path: /healthz
  interval: 5s
  timeout: 2s
  healthy_after: 1
  unhealthy_after: 4
update:
  max_surge: 2
  max_unavailable: 0
  progress_deadline: 2m
  min_ready: 5s
  max_failures: 3
stop_grace_period: 1m 30s
access:
  host: web-app.localhost
logging:
  max_size: 20m
  max_files: 5
security:
  no_new_privileges: true
volumes:
- tmpfs: /tmp
  size: 64Mi
---
# compose service db
# volume "pg_data" is named "pg-data" (a DNS label)
# secrets: create them first: dubectl create secret generic db-secrets --from-file=db_password=./secrets/db_password.txt
# port 5432: what the image postgres:16 listens on (no ports in the compose file)
name: db
image: postgres:16
replicas: 1
port: 5432
env:
  POSTGRES_DB: shop
  POSTGRES_PASSWORD_FILE: /run/secrets/db_password
  POSTGRES_USER: shop
secret_files:
- secret: db-secrets
  path: /run/secrets
resources:
  memory: 1Gi
update:
  strategy: recreate
  max_surge: 1
  max_unavailable: 0
  progress_deadline: 2m
  min_ready: 5s
  max_failures: 3
stop_grace_period: 30s
volumes:
- name: pg-data
  path: /var/lib/postgresql/data
- tmpfs: /dev/shm
  size: '134217728'
---
# compose service cache
# port 6379: what the image redis:7-alpine listens on (no ports in the compose file)
name: cache
image: redis:7-alpine
replicas: 1
port: 6379
args:
- redis-server
- --save
- ''
- --maxmemory
- 64mb
---
# compose service worker
# depends_on: db, cache (an order Dubernetes does not keep: pods start together; a pod's name resolves once it has a ready replica, and a replica that exits is restarted with back-off)
# no port: the pod is ready as soon as its container runs (health: {type: none})
name: worker
image: registry.example.com/shop/worker:1.4.2
replicas: 1
port: 80
env:
  QUEUE: default
args:
- python
- -m
- worker
health:
  type: none
  interval: 2s
  timeout: 1s
  healthy_after: 1
  unhealthy_after: 3
"#;

/// Every key that maps, with interpolation defaults, an env_file, a merge key and secrets from a file and the environment.
#[test]
fn every_key_that_maps() {
    let c = run(
        &fixture("full.yaml"),
        &[("web.env", WEB_ENV)],
        &[("FROM_SHELL", "yes"), ("SHOP_API_KEY", "k")],
    )
    .expect("convert");
    check(&c, FULL_PODS, &[]);
}

/// The stack tests/tests/compose.rs applies.
#[test]
fn the_integration_stack() {
    let c = run(
        &fixture("stack.yaml"),
        &[("web.env", WEB_ENV)],
        &[("FROM_SHELL", "yes"), ("SHOP_API_KEY", "k")],
    )
    .expect("convert");
    check(
        &c,
        r#"---
# compose service web
# depends_on: worker (an order Dubernetes does not keep: pods start together; a pod's name resolves once it has a ready replica, and a replica that exits is restarted with back-off)
# ports: container port 80 (published on 8080 by compose) is served by the ingress as http://web.localhost/
# ports: container port 80 (published on 15480 by compose, on every interface; here on 127.0.0.1 only: write listen: "0.0.0.0:15480" to accept other machines) is exposed as TCP on 127.0.0.1:15480 through the ingress
name: web
image: dubernetes/whoami:v1
replicas: 1
port: 80
env:
  GREETING: hello
access:
  host: web.localhost
expose:
- port: 80
  listen: 127.0.0.1:15480
---
# compose service worker
# no port: the pod is ready as soon as its container runs (health: {type: none})
name: worker
image: dubernetes/busybox:local
replicas: 1
port: 80
args:
- /bin/sh
- -c
- echo started > /data/started; while true; do date >> /data/ticks; sleep 1; done
health:
  type: none
  interval: 2s
  timeout: 1s
  healthy_after: 1
  unhealthy_after: 3
volumes:
- name: work
  path: /data
- tmpfs: /scratch
"#,
        &[],
    );
}

#[test]
fn unmapped_keys_say_why() {
    let c = run(&fixture("react-express-mysql.yaml"), &[], &[]).expect("convert");
    let lines = unmapped_list(&c);
    for start in [
        "services.backend.build: Dubernetes runs images and builds none",
        "services.backend.volumes[0]: ./backend/src is a bind mount of a host path",
        "services.frontend.volumes[1]: ",
        "services.db.networks: ",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(start)), "{start} in {lines:#?}");
    }
}

#[test]
fn interpolation_follows_compose() {
    let env = |name: &str| match name {
        "SET" => Some("value".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let mut warnings = Vec::new();
    let mut i = |text: &str| interpolate(text, &env, &mut warnings);
    assert_eq!(
        i("${SET}/$SET/${SET:-d}/${SET-d}").as_deref(),
        Ok("value/value/value/value")
    );
    assert_eq!(i("${EMPTY:-d}|${EMPTY-d}|${UNSET-d}").as_deref(), Ok("d||d"));
    assert_eq!(
        i("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}|${UNSET+alt}").as_deref(),
        Ok("alt||alt|")
    );
    assert_eq!(i("${UNSET:-${SET}-x}").as_deref(), Ok("value-x"), "nested default");
    assert_eq!(
        i("$$SET costs $$5, $1 and $ alone").as_deref(),
        Ok("$SET costs $5, $1 and $ alone")
    );
    assert_eq!(i("${SET?must}").as_deref(), Ok("value"));
    assert_eq!(
        i("${UNSET:?set it in .env}"),
        Err("UNSET is required: set it in .env".to_string())
    );
    assert_eq!(i("${EMPTY:?no}"), Err("EMPTY is required: no".to_string()));
    assert!(i("${SET").is_err(), "unclosed");
    assert!(i("${SET/x/y}").is_err(), "no such operator");
    assert_eq!(i("a${UNSET}b").as_deref(), Ok("ab"));
    assert_eq!(
        warnings,
        vec!["the variable UNSET is not set: an empty string is used (as compose does)".to_string()]
    );
}

#[test]
fn a_required_variable_stops_the_conversion_with_its_path() {
    let text = "services:\n  web:\n    image: \"app:${TAG:?TAG is the release}\"\n";
    let e = run(text, &[], &[]).expect_err("TAG unset");
    assert_eq!(
        format!("{e:#}"),
        "services.web.image: TAG is required: TAG is the release"
    );
    let c = run(text, &[], &[("TAG", "1.2")]).expect("TAG set");
    assert_eq!(c.pods[0].spec.image, "app:1.2");
    // `.env` beside the file, the environment first.
    let c = run(text, &[(".env", "TAG=from-dotenv\n")], &[]).expect(".env");
    assert_eq!(c.pods[0].spec.image, "app:from-dotenv");
    let c = run(text, &[(".env", "TAG=from-dotenv\n")], &[("TAG", "from-env")]).expect("env wins");
    assert_eq!(c.pods[0].spec.image, "app:from-env");
}

#[test]
fn short_ports() {
    assert_eq!(parse_short_port("80"), Some((None, None, 80, false)));
    assert_eq!(
        parse_short_port("8080:80"),
        Some((None, Some("8080".into()), 80, false))
    );
    assert_eq!(
        parse_short_port("127.0.0.1:8080:80/tcp"),
        Some((Some("127.0.0.1".into()), Some("8080".into()), 80, false))
    );
    assert_eq!(
        parse_short_port("[::1]:53:53/udp"),
        Some((Some("::1".into()), Some("53".into()), 53, true))
    );
    assert_eq!(
        parse_short_port("127.0.0.1::80"),
        Some((Some("127.0.0.1".into()), None, 80, false))
    );
    assert_eq!(parse_short_port("8000-8010:8000-8010"), None);
    assert_eq!(parse_short_port("80/sctp"), None);
    assert_eq!(parse_short_port("0"), None);
}

#[test]
fn ports_that_do_not_route() {
    let text = "services:\n  web:\n    image: app:1\n    ports:\n      - \"127.0.0.1:8080:8080\"\n      - \"9090:9090\"\n      - \"5353:53/udp\"\n      - \"7000-7001:7000-7001\"\n";
    let c = run(text, &[], &[]).expect("convert");
    assert_eq!(c.pods[0].spec.port, 8080);
    assert_eq!(c.pods[0].spec.host(), Some("web.localhost"));
    // A second port is passed as TCP (HTTP included) on its published port.
    assert_eq!(c.pods[0].spec.expose, vec![Expose::new(9090, "127.0.0.1:9090")]);
    let lines = unmapped_list(&c);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("services.web.ports[3]: \"7000-7001:7000-7001\": a port range"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("services.web.ports[0]: published on 127.0.0.1 only"),
        "{lines:#?}"
    );
    assert!(lines[2].starts_with("services.web.ports[2]: UDP ports"), "{lines:#?}");
}

/// Published TCP ports become `expose` entries: on 127.0.0.1 unless the
/// compose file names an IPv4 address, on the published host port (the
/// container port when Compose would choose one); what `listen` refuses is unmapped.
#[test]
fn tcp_ports_become_expose_entries() {
    let text = "services:\n  db:\n    image: postgres:16\n    ports:\n      - \"15432:5432\"\n      - \"0.0.0.0:16379:6379\"\n      - \"10.0.0.5:2222:22\"\n      - \"3306\"\n      - \"80:8080\"\n      - \"[::1]:2525:25\"\n      - target: 11211\n        published: \"21211\"\n        host_ip: 127.0.0.1\n";
    let c = run(text, &[], &[]).expect("convert");
    let spec = &c.pods[0].spec;
    assert_eq!(spec.port, 8080, "the one HTTP port");
    assert_eq!(spec.host(), Some("db.localhost"));
    assert_eq!(
        spec.expose,
        vec![
            Expose::new(5432, "127.0.0.1:15432"),
            Expose::new(6379, "127.0.0.1:16379"),
            Expose::new(22, "10.0.0.5:2222"),
            Expose::new(3306, "127.0.0.1:3306"),
            Expose::new(11211, "127.0.0.1:21211"),
        ]
    );
    let notes = c.pods[0].notes.join("\n");
    assert!(
        notes.contains("container port 5432 (published on 15432 by compose, on every interface; here on 127.0.0.1 only: write listen: \"0.0.0.0:15432\" to accept other machines) is exposed as TCP on 127.0.0.1:15432"),
        "{notes}"
    );
    assert!(
        notes.contains("container port 3306 (published on a random port by compose"),
        "{notes}"
    );
    assert!(
        notes.contains("container port 22 (published on 2222 by compose) is exposed as TCP on 10.0.0.5:2222"),
        "{notes}"
    );
    assert_eq!(
        unmapped_list(&c),
        vec![
            "services.db.ports[5]: published on ::1: `expose` listens on an IPv4 address only; other pods still reach db:25".to_string(),
        ]
    );
    // Port 80 (or 443) on the host is the ingress's own: a TCP port published there is unmapped.
    let text = "services:\n  db:\n    image: postgres:16\n    ports:\n      - \"80:5432\"\n";
    let c = run(text, &[], &[]).expect("convert");
    assert!(c.pods[0].spec.expose.is_empty());
    let lines = unmapped_list(&c);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(
            "services.db.ports[0]: cannot expose port 5432 on 127.0.0.1:80: port 80 is the ingress container's own"
        ),
        "{lines:#?}"
    );
    assert!(lines[0].ends_with("other pods still reach db:5432"), "{lines:#?}");
}

#[test]
fn names_become_dns_labels_and_clashes_are_named() {
    let text = "services:\n  My_App:\n    image: app:1\n  my-app:\n    image: app:2\n";
    let c = run(text, &[], &[]).expect("convert");
    assert_eq!(c.pods.len(), 1);
    assert_eq!(c.pods[0].spec.name, "my-app");
    assert_eq!(
        unmapped_list(&c),
        vec!["services.my-app: services \"My_App\" and \"my-app\" would both be pod \"my-app\"; rename one"]
    );
}

#[test]
fn health_probes() {
    let words = |s: &str| shlex::split(s).expect("words");
    assert_eq!(
        http_probe(&words("curl -f http://localhost/")),
        Some((Some(80), "/".into()))
    );
    assert_eq!(
        http_probe(&words("wget -qO- http://127.0.0.1:3000/api/health")),
        Some((Some(3000), "/api/health".into()))
    );
    assert_eq!(
        http_probe(&words("curl -f http://example.com/")),
        None,
        "not the container itself"
    );
    assert_eq!(http_probe(&words("pg_isready -U postgres")), None);
    // The port of the probe is kept when it is not the pod's.
    let text = "services:\n  web:\n    image: app:1\n    ports: [\"80:8080\"]\n    healthcheck:\n      test: curl -f http://localhost:9000/ready || exit 1\n";
    let c = run(text, &[], &[]).expect("convert");
    let health = c.pods[0].spec.health.clone().expect("health");
    assert_eq!(
        (health.kind, health.path.as_str(), health.port),
        (CheckKind::Http, "/ready", Some(9000))
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(binary_size("64m").as_deref(), Some("64Mi"));
    assert_eq!(binary_size("1G").as_deref(), Some("1Gi"));
    assert_eq!(binary_size("512kb").as_deref(), Some("512Ki"));
    assert_eq!(binary_size("1048576").as_deref(), Some("1048576"));
    assert_eq!(binary_size("lots"), None);
    assert_eq!(duration("1m30s"), Some(Duration::from_secs(90)));
    assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
}

#[test]
fn what_is_a_compose_file() {
    assert!(is_compose("services:\n  web:\n    image: app\n"));
    assert!(!is_compose("name: web\nimage: app\n"));
    assert!(!is_compose("- a\n- b\n"));
    assert!(!is_compose(": not yaml ["));
    let e = run("name: web\nimage: app\n", &[], &[]).expect_err("no services");
    assert!(e.to_string().contains("no `services`"), "{e}");
}

#[test]
fn env_files_missing_or_optional() {
    let text = "services:\n  web:\n    image: app:1\n    env_file:\n      - path: optional.env\n        required: false\n      - missing.env\n";
    let c = run(text, &[], &[]).expect("convert");
    let lines = unmapped_list(&c);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("services.web.env_file: /project/missing.env: not read"),
        "{lines:#?}"
    );
}

#[test]
fn a_variable_without_value_comes_from_the_environment() {
    let text = "services:\n  web:\n    image: app:1\n    environment:\n      - FROM_SHELL\n      - NOT_SET\n";
    let c = run(text, &[], &[("FROM_SHELL", "yes")]).expect("convert");
    assert_eq!(
        c.pods[0].spec.env.get("FROM_SHELL"),
        Some(&EnvValue::Value("yes".into()))
    );
    assert!(!c.pods[0].spec.env.contains_key("NOT_SET"));
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.unmapped.is_empty());
}

/// `deploy.placement`: constraints and one spread map as they are (Swarm's
/// syntax is a pod's); what does not parse, a second spread and
/// `max_replicas_per_node` are unmapped with the reason.
#[test]
fn deploy_placement_maps_to_placement() {
    let text = "services:\n  db:\n    image: postgres:16\n    deploy:\n      placement:\n        \
                constraints: [\"node.role == manager\", \"node.labels.disk==ssd\", \"node.name==x\"]\n        \
                preferences: [{spread: node.labels.zone}, {spread: node.labels.rack}]\n        \
                max_replicas_per_node: 1\n";
    let c = run(text, &[], &[]).expect("convert");
    let placement = c.pods[0].spec.placement.clone().expect("a placement");
    assert_eq!(placement.constraints, ["node.role==manager", "node.labels.disk==ssd"]);
    assert_eq!(placement.spread.as_deref(), Some("node.labels.zone"));
    let paths: Vec<&str> = c.unmapped.iter().map(|u| u.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "services.db.deploy.placement.constraints[2]",
            "services.db.deploy.placement.preferences[1]",
            "services.db.deploy.placement.max_replicas_per_node",
        ],
        "{:#?}",
        unmapped_list(&c)
    );
}
