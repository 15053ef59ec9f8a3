//! A throwaway PostgreSQL cluster for tests: `initdb` into a temp dir, the
//! real `postgres` on a free loopback port, one database per test.
//!
//! The cluster is run by a small shell supervisor whose stdin is a pipe from
//! this process: when the test process ends, however it ends (a panic, an
//! abort, `kill -9`), the pipe closes, the supervisor stops PostgreSQL and
//! removes the dir. Nothing is left behind and no exit hook is needed. The
//! same pipe carries `stop` and `start`, for tests of a database that goes
//! away and comes back.
//!
//! `initdb` refuses to run as root: as root the cluster runs as the
//! `postgres` system user (Debian's package creates it) through `setpriv`.
//! With `DUBERNETES_TEST_PG_URL` set (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/postgres`), [`PgCluster::shared`]
//! uses that server instead of starting one.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The supervisor: starts postgres, obeys `stop`/`start` lines, and on EOF
/// stops postgres and removes the cluster's dir.
const SUPERVISOR: &str = r#"
dir=$1; bin=$2; port=$3; run=$4; hosts=$5
pid=
start() {
  $run "$bin/postgres" -D "$dir/data" -k "$dir" -h "$hosts" -p "$port" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
    >>"$dir/postgres.log" 2>&1 &
  pid=$!
}
stop() {
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; fi
}
start
echo started
while read -r cmd; do
  case "$cmd" in
    stop) stop; echo stopped ;;
    start) start; echo started ;;
  esac
done
stop
rm -rf "$dir"
"#;

/// A PostgreSQL server for tests.
pub struct PgCluster {
    /// `127.0.0.1:PORT` of the server.
    pub addr: String,
    /// The user tests connect as (a superuser, trust auth on loopback).
    user: String,
    bin: Option<PathBuf>,
    supervisor: Mutex<Option<(Child, ChildStdin, BufReader<ChildStdout>)>>,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster").field("addr", &self.addr).finish()
    }
}

/// The directory of the PostgreSQL server binaries, or a panic saying how to get them.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): these tests need a real \
             PostgreSQL; install it with `apt-get install postgresql` (scripts/test.sh does), or point \
             DUBERNETES_TEST_PG_URL at a server"
        )
    })
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run it ({e})"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// The cluster the tests of this process share: started on first use.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| match std::env::var("DUBERNETES_TEST_PG_URL") {
            Ok(url) => PgCluster::external(&url),
            Err(_) => PgCluster::start(),
        })
    }

    fn external(url: &str) -> PgCluster {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .unwrap_or_else(|| panic!("DUBERNETES_TEST_PG_URL={url:?} is not a postgres:// URL"));
        let (user, hostport) = rest.split_once('@').unwrap_or(("postgres", rest));
        let hostport = hostport.split('/').next().unwrap_or(hostport);
        PgCluster {
            addr: hostport.to_string(),
            user: user.to_string(),
            bin: None,
            supervisor: Mutex::new(None),
        }
    }

    /// A new cluster of its own (for a test that stops and starts it).
    pub fn start() -> PgCluster {
        PgCluster::start_listening(None, &[])
    }

    /// A new cluster of its own that also listens on `also`, an address of
    /// this host, and trusts the clients of `also`'s /24 (the test's own
    /// private subnet, as for servers in network namespaces of the test).
    /// [`url`](Self::url) and [`new_database`](Self::new_database) still
    /// name 127.0.0.1: [`via`](Self::via) turns one into a URL on `also`.
    /// `settings` go into its `postgresql.conf` (name, value: test code's own).
    pub fn start_listening(also: Option<std::net::Ipv4Addr>, settings: &[(&str, &str)]) -> PgCluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("dub-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("creating a temp dir for PostgreSQL: {e}"))
            .keep();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let runner = if root {
            let ids = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .unwrap_or_else(|e| panic!("id {flag} postgres: {e}"));
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| {
                    panic!("running as root, the test cluster runs as the `postgres` user, which does not exist; install Debian's `postgresql` package")
                })
            };
            let (uid, gid) = (ids("-u"), ids("-g"));
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.display()));
            "setpriv --reuid=postgres --regid=postgres --init-groups".to_string()
        } else {
            String::new()
        };
        let mut initdb = Command::new("sh");
        initdb.arg("-c").arg(format!(
            "{runner} \"$0\" -D \"$1\" -U postgres --auth=trust -E UTF8 --no-sync --no-instructions"
        ));
        initdb.arg(bin.join("initdb")).arg(dir.join("data"));
        run(&mut initdb, "initdb");
        if !settings.is_empty() {
            let conf = dir.join("data").join("postgresql.conf");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&conf)
                .unwrap_or_else(|e| panic!("opening {}: {e}", conf.display()));
            for (name, value) in settings {
                writeln!(file, "{name} = '{value}'").unwrap_or_else(|e| panic!("writing {}: {e}", conf.display()));
            }
        }
        let mut hosts = "127.0.0.1".to_string();
        if let Some(also) = also {
            let [a, b, c, _] = also.octets();
            let hba = dir.join("data").join("pg_hba.conf");
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&hba)
                .unwrap_or_else(|e| panic!("opening {}: {e}", hba.display()));
            writeln!(file, "host all all {a}.{b}.{c}.0/24 trust")
                .unwrap_or_else(|e| panic!("writing {}: {e}", hba.display()));
            hosts = format!("127.0.0.1,{also}");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("finding a free port: {e}"));
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("supervisor")
            .arg(&dir)
            .arg(&bin)
            .arg(port.to_string())
            .arg(runner)
            .arg(hosts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting PostgreSQL: {e}"));
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(i), Some(o)) => (i, BufReader::new(o)),
            _ => panic!("the PostgreSQL supervisor has no pipes"),
        };
        let cluster = PgCluster {
            addr: format!("127.0.0.1:{port}"),
            user: "postgres".into(),
            bin: Some(bin),
            supervisor: Mutex::new(Some((child, stdin, stdout))),
        };
        cluster.expect_line("started");
        cluster.wait_ready();
        cluster
    }

    fn expect_line(&self, want: &str) {
        let mut guard = self.supervisor.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, _, stdout)) = guard.as_mut() else {
            panic!("this cluster is not run by this process");
        };
        let mut line = String::new();
        let read = stdout.read_line(&mut line);
        assert!(
            matches!(read, Ok(n) if n > 0) && line.trim() == want,
            "the PostgreSQL supervisor said {line:?} ({read:?}), not {want:?}"
        );
    }

    fn send(&self, cmd: &str) {
        let mut guard = self.supervisor.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, stdin, _)) = guard.as_mut() else {
            panic!("this cluster is not run by this process");
        };
        writeln!(stdin, "{cmd}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("telling the PostgreSQL supervisor to {cmd}: {e}"));
    }

    /// Waits (at most 60 s) until the server accepts connections.
    fn wait_ready(&self) {
        let Some(bin) = &self.bin else { return };
        let (host, port) = self.addr.split_once(':').unwrap_or((&self.addr, "5432"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", host, "-p", port, "-U", &self.user])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL on {} did not accept connections within 60 s",
                self.addr
            );
            #[expect(
                clippy::disallowed_methods,
                reason = "a synchronous poll of a starting PostgreSQL, bounded by its deadline (no runtime here)"
            )]
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: connections are closed); the data stays.
    pub fn stop(&self) {
        self.send("stop");
        self.expect_line("stopped");
    }

    /// Starts the stopped server again on the same port, and waits until it is ready.
    pub fn resume(&self) {
        self.send("start");
        self.expect_line("started");
        self.wait_ready();
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{}@{}/{db}", self.user, self.addr)
    }

    /// `url` (one of this cluster's) with its host replaced by `host`, e.g.
    /// the other address of a cluster made by [`start_listening`](Self::start_listening).
    pub fn via(&self, url: &str, host: &str) -> String {
        let port = self.addr.rsplit_once(':').map_or("5432", |(_, p)| p);
        url.replacen(&format!("@{}/", self.addr), &format!("@{host}:{port}/"), 1)
    }

    /// Creates a new, empty database with a unique name and returns its URL.
    pub async fn new_database(&self) -> String {
        use sqlx::Connection as _;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("dub_{}_{n}_{:x}", std::process::id(), rand::random::<u32>());
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL on {}: {e}", self.addr));
        // The name is ours: digits, lowercase hex and underscores.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        self.url(&name)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Closing stdin makes the supervisor stop PostgreSQL and remove its dir.
        if let Some((mut child, stdin, _)) = self.supervisor.get_mut().ok().and_then(Option::take) {
            drop(stdin);
            let _ = child.wait();
        }
    }
}
