//! `switchboard device` (spec 11, client side) run as the real binary against the
//! real PBX: the PBX binary on a fixed port (so it can be stopped and started again at
//! the address the device saved), or an in-process test server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use switchboard::store::{Db, events};

use crate::harness::{Process, TestDb, TestServer, banner_admin_token, run_cli};
use crate::interop::free_port;

/// The PBX binary with its own directory and a fixed HTTP port; heartbeats every
/// second, so three missed ones make a device offline within seconds.
struct Pbx {
    dir: tempfile::TempDir,
    port: u16,
    process: Option<Process>,
    admin: reqwest::Client,
    token: String,
}

impl Pbx {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("config.yml"),
            format!(
                "http:\n  listen: 127.0.0.1:{port}\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\ndevices:\n  heartbeat_interval: 1\n"
            ),
        )
        .unwrap();
        let mut process = Process::spawn(dir.path(), &["--config", "config.yml"]);
        process.wait_for_line("Switchboard is running");
        let password = process.value_after("Password:  ").expect("banner password");
        let admin = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let token = banner_admin_token(&admin, &base, &password).await;
        Self {
            dir,
            port,
            process: Some(process),
            admin,
            token,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn down(&mut self) {
        let mut process = self.process.take().expect("running");
        assert!(process.terminate().success());
    }

    fn up(&mut self) {
        let mut process = Process::spawn(self.dir.path(), &["--config", "config.yml"]);
        process.wait_for_line("Switchboard is running");
        self.process = Some(process);
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (reqwest::StatusCode, Value) {
        let resp = self
            .admin
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn new_token(&self) -> String {
        let (status, body) = self
            .send(
                reqwest::Method::POST,
                "/api/devices/tokens",
                json!({"note": "agent test"}),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
        body["token_code"].as_str().unwrap().to_owned()
    }

    /// The events of `kind` in the PBX's outbox (its SQLite file).
    async fn events(&self, kind: &str) -> Vec<Value> {
        let url = format!("sqlite://{}/data/switchboard.db", self.dir.path().display());
        let db = Db::connect(&url, 1).await.unwrap();
        let found = events::after(db.pool(), 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event_type == kind)
            .map(|e| e.data)
            .collect();
        db.close().await;
        found
    }
}

/// A device's working directory and state file.
struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.path().join("conf/device.json")
    }

    /// `switchboard device ARGS --state FILE`: (success, stdout, stderr).
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let state = self.state_path();
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend(["--state", state.to_str().unwrap()]);
        run_cli(self.dir.path(), &all, None)
    }

    fn spawn(&self, args: &[&str]) -> Process {
        let state = self.state_path();
        let mut all = vec!["device"];
        all.extend_from_slice(args);
        all.extend(["--state", state.to_str().unwrap()]);
        Process::spawn(self.dir.path(), &all)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_path()).unwrap()).unwrap()
    }

    fn register(&self, base: &str, token: &str) -> (bool, String, String) {
        self.run(&[
            "register", "--server", base, "--token", token, "--note", "lab box",
        ])
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Enrolment against `base` with the unused `token`: a private state file holding the
/// secret, a masked key in `status`, and the token refused the second time.
fn enrol_and_reuse(base: &str, token: &str) -> Device {
    let device = Device::new();
    let (ok, out, err) = device.register(base, &format!(" {} ", token.to_lowercase()));
    assert!(ok, "{out}{err}");
    assert!(out.contains("registered as device-"), "{out}");
    assert_eq!(mode(&device.state_path()), 0o600);
    let state = device.state();
    let key = state["device_key"].as_str().unwrap().to_owned();
    let hex = key.strip_prefix("device-").unwrap();
    assert!(
        hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    assert!(!state["device_secret"].as_str().unwrap().is_empty());
    assert_eq!(state["server"], base);
    assert!(state["last_heartbeat"].is_null());

    let (ok, out, _) = device.run(&["status"]);
    assert!(ok);
    assert!(
        out.contains("registered") && out.contains(&format!("{}******", &key[..9])),
        "{out}"
    );
    assert!(!out.contains(&key), "masked: {out}");
    let (_, out, _) = device.run(&["status", "--show-key"]);
    assert!(out.contains(&key), "{out}");

    let other = Device::new();
    let (ok, _, err) = other.register(base, token);
    assert!(!ok);
    assert!(err.contains("already used"), "{err}");
    assert!(!other.state_path().exists());
    device
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_saves_a_private_secret_and_a_used_token_is_refused() {
    let pbx = Pbx::start().await;
    let token = pbx.new_token().await;
    let device = enrol_and_reuse(&pbx.url(), &token);
    let key = device.state()["device_key"].as_str().unwrap().to_owned();
    let (_, seen) = pbx
        .send(
            reqwest::Method::GET,
            &format!("/api/devices/{key}"),
            Value::Null,
        )
        .await;
    assert_eq!(seen["note"], "lab box", "{seen}");
    assert!(
        seen["hostname"].is_string(),
        "the device's info was sent: {seen}"
    );

    // Registering again over a saved registration would lose its secret.
    let (ok, _, err) = device.register(&pbx.url(), &pbx.new_token().await);
    assert!(!ok);
    assert!(err.contains("already registered"), "{err}");

    // Unknown token: 401 explained.
    let (ok, _, err) = Device::new().register(&pbx.url(), "QQQ222");
    assert!(!ok);
    assert!(err.contains("the token is unknown or expired"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_badly_shaped_token_is_refused_without_a_request() {
    let pbx = Pbx::start().await;
    for bad in ["AB12", "ABC1234", "AB-123", ""] {
        let device = Device::new();
        let (ok, _, err) = device.register(&pbx.url(), bad);
        assert!(!ok, "{bad:?}");
        assert!(err.contains("the token must"), "{bad:?}: {err}");
        assert!(!device.state_path().exists());
    }
    // Nothing reached the PBX: no refusal was counted against this address.
    assert!(pbx.events("security.threat_detected").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_named() {
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (ok, _, err) = Device::new().register(&nobody, "ABC123");
    assert!(!ok);
    assert!(
        err.contains(&format!("cannot reach the server at {nobody}")),
        "{err}"
    );
}

/// `--once`: exit 0 and the time recorded.
fn heartbeat_once(device: &Device) {
    let (ok, out, err) = device.run(&["heartbeat", "--once"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("heartbeat ok"), "{out}");
    assert!(device.state()["last_heartbeat"].is_string());
    assert_eq!(mode(&device.state_path()), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_once_and_status_and_a_device_the_server_forgot() {
    let pbx = Pbx::start().await;
    let device = enrol_and_reuse(&pbx.url(), &pbx.new_token().await);
    heartbeat_once(&device);
    let (_, out, _) = device.run(&["status"]);
    assert!(!out.contains("last heartbeat: never"), "{out}");

    // An admin unregistered it: retrying cannot help, the agent stops at once.
    let key = device.state()["device_key"].as_str().unwrap().to_owned();
    let (status, _) = pbx
        .send(
            reqwest::Method::DELETE,
            &format!("/api/devices/{key}"),
            Value::Null,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::NO_CONTENT);
    let (ok, _, err) = device.run(&["heartbeat", "--backoff-ms", "10"]);
    assert!(!ok);
    assert!(err.contains("does not know this device"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_gives_up_after_five_failures() {
    let mut pbx = Pbx::start().await;
    let device = enrol_and_reuse(&pbx.url(), &pbx.new_token().await);
    pbx.down();
    let started = std::time::Instant::now();
    let (ok, out, err) = device.run(&["heartbeat", "--interval", "1", "--backoff-ms", "50"]);
    assert!(!ok, "{out}");
    assert!(err.contains("after 5 consecutive failures"), "{err}");
    assert!(err.contains("cannot reach the server"), "{err}");
    // 4 waits: 50, 100, 200, 400 ms.
    assert_eq!(out.matches("retrying in").count(), 4, "{out}");
    assert!(out.contains("retrying in 0.4 s"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_resume_when_the_server_is_back_and_the_device_was_offline_meanwhile() {
    let mut pbx = Pbx::start().await;
    let device = enrol_and_reuse(&pbx.url(), &pbx.new_token().await);
    let key = device.state()["device_key"].as_str().unwrap().to_owned();
    // Every 2 s; after a failure 0.5, 1, 2, 2 s: the fifth failure comes ~5.5 s on.
    let mut agent = device.spawn(&["heartbeat", "--interval", "2", "--backoff-ms", "500"]);
    agent.wait_for_line("heartbeat ok");
    pbx.down();
    // Three failures: the device has been silent for over 3 s, three of the PBX's
    // one-second intervals, so the PBX finds it offline as it starts again.
    agent.wait_for_line("heartbeat failed (3/5)");
    pbx.up();
    agent.wait_for_line("heartbeat ok");
    let (_, seen) = pbx
        .send(
            reqwest::Method::GET,
            &format!("/api/devices/{key}"),
            Value::Null,
        )
        .await;
    assert_eq!(seen["status"], "online", "{seen}");
    let offline = pbx.events("device.offline").await;
    assert_eq!(offline.len(), 1, "{offline:?}");
    assert_eq!(offline[0]["device_key"], key.as_str());
    assert_eq!(
        pbx.events("device.online").await.len(),
        2,
        "first heartbeat, and back"
    );
    let status = agent.terminate();
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(
        agent.seen.iter().any(|l| l.contains("stopped by signal")),
        "{:?}",
        agent.seen
    );
}

/// The same client against the PBX's own device API: enrolment, token reuse refused,
/// heartbeat seen by the admin, SSH key published, and unregistering by the device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_the_pbx() {
    let server = TestServer::start(TestDb::sqlite().await).await;
    let admin = server.admin().await;
    let (status, body) = admin
        .post("/api/devices/tokens", json!({"note": "agent test"}))
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let token = body["token_code"].as_str().unwrap().to_owned();

    let device = enrol_and_reuse(&server.base, &token);
    heartbeat_once(&device);
    let key = device.state()["device_key"].as_str().unwrap().to_owned();
    let (status, body) = admin.get(&format!("/api/devices/{key}")).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["status"], "online", "{body}");
    assert_eq!(body["note"], "lab box", "{body}");

    let pubkey = device.dir.path().join("id.pub");
    std::fs::write(&pubkey, format!("ssh-ed25519 {ED25519} me@box\n")).unwrap();
    let (ok, out, err) = device.run(&["ssh-key", "publish", "--file", pubkey.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    let (_, body) = admin.get(&format!("/api/devices/{key}/ssh-key")).await;
    assert!(body["pubkey"].as_str().unwrap().contains(ED25519), "{body}");

    let (ok, out, err) = device.run(&["unregister"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("the server deleted the device"), "{out}");
    assert!(!device.state_path().exists());
    let (status, _) = admin.get(&format!("/api/devices/{key}")).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
    server.stop().await;
}

/// A key made with `ssh-keygen -t ed25519`.
const ED25519: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIEaZzCyoFH04XCJWQyWH6q+NJ4W3cd0kCW+QSOvesmSt";

/// Over HTTPS with a private CA: refused until `--ca` names it (or `--insecure`, said
/// loudly); the server's SSH host keys fetched, fingerprinted and written to known_hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_the_ssh_host_keys() {
    use switchboard::config::HttpTls;
    let certs = tempfile::tempdir().unwrap();
    let crate::harness::PrivateCa {
        cert_file,
        key_file,
        ca_file,
        ca_pem,
        ..
    } = crate::harness::private_ca(certs.path());
    std::fs::write(
        certs.path().join("ssh_host_ed25519_key.pub"),
        format!("ssh-ed25519 {ED25519} root@pbx\n"),
    )
    .unwrap();
    let pattern = format!("{}/ssh_host_*_key.pub", certs.path().display());
    let server = TestServer::start_tweaked(TestDb::sqlite().await, |config| {
        config.http.tls = HttpTls::Files {
            cert_file,
            key_file,
        };
        config.devices.ssh_host_key_files = vec![pattern];
    })
    .await;
    let port = server.base.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}");
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let password = server.operator.as_ref().unwrap().password.clone();
    let admin = banner_admin_token(&https, &url, &password).await;
    let created: Value = https
        .post(format!("{url}/api/devices/tokens"))
        .bearer_auth(admin)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token_code"].as_str().unwrap().to_owned();
    let ca = ca_file.to_str().unwrap();

    let device = Device::new();
    let (ok, _, err) = device.register(&url, &token);
    assert!(!ok);
    assert!(err.contains("TLS") && err.contains("--ca FILE"), "{err}");
    let (ok, out, err) = device.run(&["register", "--server", &url, "--token", &token, "--ca", ca]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = device.run(&["heartbeat", "--once", "--ca", ca]);
    assert!(ok && out.contains("heartbeat ok"), "{out}{err}");
    let (ok, out, err) = device.run(&["heartbeat", "--once", "--insecure"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("WARNING: --insecure"), "{err}");

    // The fingerprint ssh-keygen -lf prints for that key.
    let known_hosts = device.dir.path().join("known_hosts");
    let (ok, out, err) = device.run(&[
        "ssh-hostkey",
        "--ca",
        ca,
        "--known-hosts",
        known_hosts.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("SHA256:yjFO2dbaD+1Itk0uqEWo1RwdmIWX6a1tZyOAbPhIGcE"),
        "{out}"
    );
    let written = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        written.contains(&format!("ssh-ed25519 {ED25519}")),
        "{written}"
    );
    server.stop().await;
}
