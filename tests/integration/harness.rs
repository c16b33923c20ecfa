//! Test harness: fresh databases on both backends, in-process servers on free ports,
//! and an HTTP client that speaks the API.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL`, else `DATABASE_URL`, else the CI
//! machine's `postgres://postgres@127.0.0.1:5432/test`; each test gets a database of
//! its own, dropped afterwards. Without a reachable server PostgreSQL is skipped, unless
//! `CI` is set, where that is a failure.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;
use switchboard::config::{Config, ListenAddr, Secret, SipListen};
use switchboard::first_start::OperatorCredentials;
use switchboard::server::{self, Server};
use switchboard::store::{Backend, Db};

pub const NEW_ADMIN_PASSWORD: &str = "Correct-Horse-Battery-9";

pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// A missing tool or service: skipped outside CI, a failure in CI.
pub fn skip_or_fail(what: &str) {
    if in_ci() {
        panic!("{what} (CI is set, so this is a failure, not a skip)");
    }
    eprintln!("SKIPPED: {what}");
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"))
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether PostgreSQL answers (asked once per test process; stale test databases of
/// dead test processes are dropped then).
async fn postgres_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    if let Some(v) = AVAILABLE.get() {
        return *v;
    }
    let ok = match sqlx::PgConnection::connect(&postgres_admin_url()).await {
        Ok(mut conn) => {
            drop_stale_databases(&mut conn).await;
            true
        }
        Err(e) => {
            skip_or_fail(&format!(
                "PostgreSQL at {} is unreachable: {e}",
                postgres_admin_url()
            ));
            false
        }
    };
    *AVAILABLE.get_or_init(|| ok)
}

async fn drop_stale_databases(conn: &mut sqlx::PgConnection) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'sbt\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

/// A database of one test, removed when dropped.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        Self {
            backend: Backend::Sqlite,
            url,
            pg_name: None,
            _dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<Self> {
        if !postgres_available().await {
            return None;
        }
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sbt_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        Some(Self {
            backend: Backend::Postgres,
            url: format!("{base}/{name}"),
            pg_name: Some(name),
            _dir: None,
        })
    }

    /// SQLite always; PostgreSQL when available.
    pub async fn all() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite().await];
        dbs.extend(Self::postgres().await);
        dbs
    }

    pub async fn open(&self) -> Db {
        let db = Db::connect(&self.url, 5).await.unwrap();
        db.migrate().await.unwrap();
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop runs outside async: a short-lived runtime on its own thread does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// A configuration for tests: loopback, a free port, the given database and data dir.
pub fn test_config(db: &TestDb, data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Default::default()
    };
    config.database.url = Secret::new(db.url.clone());
    config.database.max_connections = 5;
    config.http.listen = ListenAddr("127.0.0.1:0".parse().unwrap());
    config.sip.listen = vec![
        SipListen::parse("udp:127.0.0.1:0").unwrap(),
        SipListen::parse("tcp:127.0.0.1:0").unwrap(),
    ];
    config
}

/// An in-process server with its own data directory and database.
pub struct TestServer {
    pub server: Option<Server>,
    pub base: String,
    pub operator: Option<OperatorCredentials>,
    pub config: Config,
    /// Owned so the database and directory live as long as the server.
    _db: TestDb,
    _data_dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(db: TestDb) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let config = test_config(&db, data_dir.path());
        Self::start_with(db, data_dir, config).await
    }

    /// [`Self::start`] with the test configuration changed by `tweak` first.
    pub async fn start_tweaked(db: TestDb, tweak: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(&db, data_dir.path());
        tweak(&mut config);
        Self::start_with(db, data_dir, config).await
    }

    pub async fn start_with(db: TestDb, data_dir: tempfile::TempDir, config: Config) -> Self {
        // SB_TEST_LOG=debug shows the server's log while debugging a test.
        if let Ok(level) = std::env::var("SB_TEST_LOG") {
            switchboard::telemetry::init_logging(&level, switchboard::config::LogFormat::Text);
        }
        let server = server::start(config.clone()).await.expect("server starts");
        let base = format!("http://{}", server.http_addr);
        let operator = server.operator.clone();
        Self {
            server: Some(server),
            base,
            operator,
            config,
            _db: db,
            _data_dir: data_dir,
        }
    }

    /// Stops and starts again on the same database and data directory.
    pub async fn restart(mut self) -> Self {
        self.server.take().unwrap().shutdown().await.unwrap();
        let server = server::start(self.config.clone())
            .await
            .expect("server restarts");
        self.base = format!("http://{}", server.http_addr);
        self.operator = server.operator.clone();
        self.server = Some(server);
        self
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    pub fn db(&self) -> &Db {
        &self.server.as_ref().unwrap().app.db
    }

    pub fn sip_addr(&self, transport: switchboard::config::SipTransport) -> std::net::SocketAddr {
        self.server
            .as_ref()
            .unwrap()
            .sip
            .addr(transport)
            .expect("a listener of that transport")
    }

    /// Creates extension `number` with `sip_secret` through the API.
    pub async fn extension_with_secret(&self, admin: &Client, number: &str, sip_secret: &str) {
        let (status, body) = admin
            .post("/api/extensions", json!({"number": number, "name": format!("Phone {number}"), "sip_secret": sip_secret}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// Logs in as 1001 with the banner password, does the forced change, and returns
    /// an authenticated client.
    pub async fn admin(&self) -> Client {
        let creds = self.operator.as_ref().expect("first start created 1001");
        let mut c = self.client();
        let (status, body) = c
            .post(
                "/api/auth/login",
                json!({"extension": "1001", "password": creds.password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["must_change_password"], true);
        c.token = Some(body["token"].as_str().unwrap().to_owned());
        let (status, body) = c
            .post(
                "/api/auth/password",
                json!({"current_password": creds.password, "new_password": NEW_ADMIN_PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        c.token = Some(body["token"].as_str().unwrap().to_owned());
        c
    }

    /// Creates a user extension with a known password and returns a client logged in
    /// as it (password already changed).
    pub async fn user(&self, admin: &Client, number: &str) -> Client {
        let (status, body) = admin
            .post(
                "/api/extensions",
                json!({"number": number, "name": format!("User {number}"), "password": "user-pass-1234", "must_change_password": false}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let mut c = self.client();
        let (status, body) = c
            .post(
                "/api/auth/login",
                json!({"extension": number, "password": "user-pass-1234"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        c.token = Some(body["token"].as_str().unwrap().to_owned());
        c
    }
}

/// A JSON client for the API.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// A JSON request whose whole response (headers too) the test reads.
    pub async fn raw_response(&self, method: Method, path: &str, body: Value) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::DELETE, path, None).await
    }

    /// `GET path` as bytes with its content type and length headers.
    pub async fn get_bytes(
        &self,
        path: &str,
    ) -> (StatusCode, Option<String>, Option<u64>, Vec<u8>) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let content_type = header("content-type");
        let length = header("content-length").map(|v| v.parse().unwrap());
        (
            status,
            content_type,
            length,
            resp.bytes().await.unwrap().to_vec(),
        )
    }

    /// Sends a raw body with a content type.
    /// `GET path` as text (CSV, Prometheus metrics).
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// The error code of an API error body.
pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// The repository root (for tests that read files of the repo).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The `switchboard` binary running as a child process, its stdout read line by line.
pub struct Process {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Process {
    /// Starts `switchboard args…` in `cwd`.
    pub fn spawn(cwd: &Path, args: &[&str]) -> Self {
        Self::spawn_command(
            std::process::Command::new(env!("CARGO_BIN_EXE_switchboard")),
            cwd,
            args,
        )
    }

    /// [`Self::spawn`] with the soft limit on open files lowered to `soft` (util-linux
    /// `prlimit`, which then execs the PBX in its place: same process).
    pub fn spawn_with_open_files(cwd: &Path, args: &[&str], soft: u64) -> Self {
        let mut prlimit = std::process::Command::new("prlimit");
        prlimit
            .arg(format!("--nofile={soft}:"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_switchboard"));
        Self::spawn_command(prlimit, cwd, args)
    }

    fn spawn_command(mut command: std::process::Command, cwd: &Path, args: &[&str]) -> Self {
        let mut child = command
            .args(args)
            .current_dir(cwd)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("switchboard starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to a minute) for a stdout line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} on stdout; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The value after `label` on a line already seen (e.g. the banner password).
    pub fn value_after(&self, label: &str) -> Option<String> {
        self.seen
            .iter()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_owned())
    }

    /// SIGTERM, then the exit status (graceful shutdown must finish in time).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Collect what was printed after the wait, for the caller's checks.
                while let Ok(line) = self.lines.try_recv() {
                    self.seen.push(line);
                }
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "switchboard did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `switchboard args…` to completion in `cwd`: (success, stdout, stderr).
pub fn run_cli(cwd: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Logs in to a server started from the binary as 1001 with the banner password and
/// makes the forced change (to [`NEW_ADMIN_PASSWORD`]): a bearer token.
pub async fn banner_admin_token(http: &reqwest::Client, base: &str, password: &str) -> String {
    let body: Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"extension": "1001", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    let body: Value = http
        .post(format!("{base}/api/auth/password"))
        .bearer_auth(&token)
        .json(&json!({"current_password": password, "new_password": NEW_ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// A private CA and a certificate for `localhost` it signed, written to a directory
/// (rustls refuses a self-signed CA as the server's own certificate).
pub struct PrivateCa {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The CA's certificate, also as a file (what a client is told to trust).
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
}

pub fn private_ca(dir: &Path) -> PrivateCa {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let files = PrivateCa {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
        ca_file: dir.join("ca.pem"),
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
    };
    std::fs::write(&files.cert_file, leaf.pem()).unwrap();
    std::fs::write(&files.key_file, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&files.ca_file, &files.ca_pem).unwrap();
    files
}
