//! Real SIP peers against the registrar: the SIPp scenarios of `tests/sipp/`, baresip as
//! a softphone, and sipsak, each run against an in-process server of its own (free
//! ports, temporary directories). A missing tool skips the test outside CI and fails it
//! in CI (`.ci/run` installs `sip-tester baresip sipsak`).
//!
//! The tools as Debian 12 ships them (SIPp 3.6.1, baresip 1.0.0 on libre, sipsak
//! 0.9.8.1) know only MD5 and read only the first challenge: this is why
//! `sip.digest_algorithms` puts MD5 first by default, and these tests prove it.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use switchboard::config::{Config, SipTransport};
use switchboard::store::{events, registrations};
use switchboard::time::Timestamp;
use tokio::io::AsyncBufReadExt;
use tokio::task::JoinHandle;

use crate::harness::{Client, TestDb, TestServer, skip_or_fail, test_config};

/// A tool still running after this is killed and fails its test.
const TOOL_DEADLINE: Duration = Duration::from_secs(20);

pub(crate) const SECRET_2001: &str = "interop-secret-2001";
pub(crate) const SECRET_2002: &str = "interop-secret-2002";

// ---------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------

/// Whether `binary` is on PATH; when it is not, the test is skipped (a failure in CI).
pub(crate) fn installed(binary: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()));
    if !found {
        skip_or_fail(&format!(
            "{binary} is not installed (apt-get install {package})"
        ));
    }
    found
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

/// A port free on 127.0.0.1 for UDP and TCP, never handed out twice by this process
/// (the tool binds it a moment later).
pub(crate) fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if GIVEN
            .lock()
            .unwrap()
            .get_or_insert_with(HashSet::new)
            .insert(port)
        {
            return port;
        }
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` to completion (killed after [`TOOL_DEADLINE`]): status, stdout, stderr.
async fn run(mut cmd: tokio::process::Command) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let shown = format!("{cmd:?}");
    let child = cmd.spawn().expect("the tool starts");
    let out = tokio::time::timeout(TOOL_DEADLINE, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{shown} did not finish within {TOOL_DEADLINE:?}"))
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One run of a SIPp scenario: a single call (`-m 1`) from 127.0.0.1 on a free port
/// (or the one given), message and error traces in a temporary directory.
pub(crate) struct Sipp {
    scenario: &'static str,
    /// `u1` (UDP) or `t1` (TCP).
    transport: &'static str,
    target: SocketAddr,
    /// `[service]`: the extension in the From, To and Contact URIs.
    service: String,
    /// `-au` / `-ap`, for `[authentication]`.
    credentials: Option<(String, String)>,
    /// The local port, when it matters (a callee answers where it registered from).
    port: Option<u16>,
    /// `-key name value`: the scenario's `[name]`.
    keys: Vec<(String, String)>,
    /// Seconds before SIPp gives up on the whole run.
    timeout: u32,
    /// Further options (`-d`, `-mp`).
    extra: Vec<String>,
}

/// A SIPp started in the background.
pub(crate) struct SippRun {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
    label: String,
}

impl SippRun {
    /// Waits for it to end (killed after [`TOOL_DEADLINE`]): status, report, stderr.
    pub(crate) async fn finish(self) -> (ExitStatus, String, String) {
        let out = tokio::time::timeout(TOOL_DEADLINE, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{} did not finish within {TOOL_DEADLINE:?}", self.label))
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let report = format!(
            "{}: {}\n--- stderr\n{stderr}\n--- errors\n{}\n--- messages\n{}\n--- screen (end)\n{}",
            self.label,
            out.status,
            read("errors.log"),
            read("messages.log"),
            tail(&stdout, 25),
        );
        (out.status, report, stderr)
    }

    /// Asserts that it ended with every message the one expected; returns its report
    /// (messages included).
    pub(crate) async fn passed(self) -> String {
        let (status, report, _) = self.finish().await;
        assert!(status.success(), "{report}");
        report
    }
}

impl Sipp {
    pub(crate) fn new(scenario: &'static str, target: SocketAddr, service: &str) -> Self {
        Self {
            scenario,
            transport: "u1",
            target,
            service: service.into(),
            credentials: None,
            port: None,
            keys: Vec::new(),
            timeout: 10,
            extra: Vec::new(),
        }
    }

    /// A longer run than the default 10 s.
    pub(crate) fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = seconds;
        self
    }

    /// `-d`: how long a `<pause/>` without a length lasts.
    pub(crate) fn pause_ms(mut self, ms: u64) -> Self {
        self.extra.extend(["-d".to_owned(), ms.to_string()]);
        self
    }

    /// A free media port (`-mp`), for a scenario that sends RTP.
    pub(crate) fn media(mut self) -> Self {
        self.extra
            .extend(["-mp".to_owned(), free_port().to_string()]);
        self
    }

    pub(crate) fn tcp(mut self) -> Self {
        self.transport = "t1";
        self
    }

    /// `-nr`: no UDP retransmissions (loopback loses nothing). For a registration whose
    /// port the next SIPp takes: on a loaded machine a request resent after 500 ms gets
    /// a second answer, which would reach that SIPp and abort its call.
    pub(crate) fn no_retransmissions(mut self) -> Self {
        self.extra.push("-nr".to_owned());
        self
    }

    pub(crate) fn auth(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.into(), password.into()));
        self
    }

    pub(crate) fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub(crate) fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.push((name.into(), value.into()));
        self
    }

    /// Starts SIPp in the background.
    pub(crate) fn spawn(&self) -> SippRun {
        let dir = tempfile::tempdir().unwrap();
        let port = self.port.unwrap_or_else(free_port);
        let mut cmd = tokio::process::Command::new("sipp");
        cmd.current_dir(dir.path())
            .arg(self.target.to_string())
            .arg("-sf")
            .arg(scenario(self.scenario))
            .args(["-t", self.transport, "-i", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .args(["-s", &self.service, "-m", "1", "-nostdin"])
            // A lost or missing answer fails within seconds, not at the deadline.
            .args(["-timeout", &self.timeout.to_string(), "-timeout_error"])
            .args(["-trace_msg", "-message_file"])
            .arg(dir.path().join("messages.log"))
            .args(["-trace_err", "-error_file"])
            .arg(dir.path().join("errors.log"));
        if let Some((user, password)) = &self.credentials {
            cmd.args(["-au", user, "-ap", password]);
        }
        for (name, value) in &self.keys {
            cmd.args(["-key", name, value]);
        }
        cmd.args(&self.extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let label = format!(
            "sipp -sf {} -t {} {} -s {} -p {port}",
            self.scenario, self.transport, self.target, self.service
        );
        SippRun {
            child: cmd.spawn().expect("sipp starts"),
            dir,
            label,
        }
    }

    /// Exit status and a report with everything SIPp said and traced.
    pub(crate) async fn run(&self) -> (ExitStatus, String) {
        // Another program may take a free port between free_port() and SIPp's bind.
        for _ in 0..3 {
            let (status, report, stderr) = self.spawn().finish().await;
            if stderr.contains("Address already in use") && self.port.is_none() {
                continue;
            }
            return (status, report);
        }
        panic!("no free port for sipp after 3 tries");
    }

    /// Runs the scenario and asserts that every message was the one expected and every
    /// check in it held (SIPp's exit status 0); SIPp's report otherwise.
    pub(crate) async fn passes(&self) {
        let (status, report) = self.run().await;
        assert!(status.success(), "{report}");
    }
}

/// A server with extensions 2001 and 2002 (SIP secrets above), `tweak` applied to its
/// configuration first.
pub(crate) async fn server_with(tweak: impl FnOnce(&mut Config)) -> (TestServer, Client) {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    tweak(&mut config);
    let server = TestServer::start_with(db, data_dir, config).await;
    let admin = server.admin().await;
    server
        .extension_with_secret(&admin, "2001", SECRET_2001)
        .await;
    server
        .extension_with_secret(&admin, "2002", SECRET_2002)
        .await;
    (server, admin)
}

/// Registers extension `number` from a port of its own and starts `scenario` there as
/// a callee (SIPp answers where it registered from).
pub(crate) async fn callee_as(
    server: &TestServer,
    scenario: &'static str,
    number: &str,
    secret: &str,
) -> SippRun {
    callee_waiting(server, scenario, number, secret, 10).await
}

/// [`callee_as`] waiting up to `seconds` for its call (SIPp's `-timeout`).
pub(crate) async fn callee_waiting(
    server: &TestServer,
    scenario: &'static str,
    number: &str,
    secret: &str,
    seconds: u32,
) -> SippRun {
    let sip = server.sip_addr(SipTransport::Udp);
    let port = free_port();
    Sipp::new("register_digest.xml", sip, number)
        .auth(number, secret)
        .port(port)
        .no_retransmissions()
        .passes()
        .await;
    Sipp::new(scenario, sip, number)
        .port(port)
        .timeout(seconds)
        .spawn()
}

/// Short SIP timers, so the transactions of a finished call are gone within seconds
/// (Timer J = 64 × T1, I and K = T4).
pub(crate) fn quick_timers(config: &mut Config) {
    config.sip.timers.t1_ms = 50;
    config.sip.timers.t2_ms = 400;
    config.sip.timers.t4_ms = 500;
}

/// The CDRs, newest first, once there are `n`.
pub(crate) async fn cdrs(admin: &Client, n: usize) -> Vec<Value> {
    eventually(&format!("{n} call records"), || async {
        let (_, body) = admin.get("/api/cdr").await;
        body["items"].as_array().is_some_and(|i| i.len() >= n)
    })
    .await;
    let (status, body) = admin.get("/api/cdr").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

pub(crate) async fn bindings(server: &TestServer, ext: &str) -> Vec<registrations::BindingRow> {
    registrations::for_extension(server.db().pool(), ext, Timestamp::now())
        .await
        .unwrap()
}

/// The data of every event of type `kind`, oldest first.
pub(crate) async fn events_of(server: &TestServer, kind: &str) -> Vec<Value> {
    events::after(server.db().pool(), 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == kind)
        .map(|e| e.data)
        .collect()
}

/// `GET /api/registered-phones/extension/{ext}`.
async fn phones_of(admin: &Client, ext: &str) -> Vec<Value> {
    let (status, body) = admin
        .get(&format!("/api/registered-phones/extension/{ext}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("a plain array").clone()
}

/// Polls until `check` holds; fails after 10 s with `what`.
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn seconds_left(row: &registrations::BindingRow) -> i64 {
    (row.expires_at.millis() - Timestamp::now().millis()) / 1000
}

// ---------------------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sipp_registers_with_digest_over_udp() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|_| {}).await;
    Sipp::new(
        "register_digest.xml",
        server.sip_addr(SipTransport::Udp),
        "2001",
    )
    .auth("2001", SECRET_2001)
    .passes()
    .await;

    // The binding was committed before the 200 went out.
    let rows = bindings(&server, "2001").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].transport, "udp");
    assert!(
        rows[0].contact_uri.starts_with("sip:2001@127.0.0.1:"),
        "{rows:?}"
    );
    assert_eq!(rows[0].user_agent.as_deref(), Some("SIPp register_digest"));
    assert!((590..=600).contains(&seconds_left(&rows[0])), "{rows:?}");

    let (status, phones) = admin.get("/api/registered-phones").await;
    assert_eq!(status, StatusCode::OK);
    let phones = phones.as_array().expect("a plain array");
    assert_eq!(phones.len(), 1, "{phones:?}");
    assert_eq!(phones[0]["extension_number"], "2001");
    assert_eq!(phones[0]["registered_now"], true, "{phones:?}");
    assert_eq!(phones[0]["ip_address"], "127.0.0.1");
    assert_eq!(phones[0]["user_agent"], "SIPp register_digest");
    let registered = events_of(&server, "extension.registered").await;
    assert_eq!(registered.len(), 1, "{registered:?}");
    assert_eq!(registered[0]["extension"], "2001");
    assert_eq!(registered[0]["transport"], "udp");
    server.stop().await;
}

#[tokio::test]
async fn sipp_registers_with_digest_over_tcp() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|_| {}).await;
    Sipp::new(
        "register_digest.xml",
        server.sip_addr(SipTransport::Tcp),
        "2002",
    )
    .auth("2002", SECRET_2002)
    .tcp()
    .passes()
    .await;
    let rows = bindings(&server, "2002").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].transport, "tcp");
    assert!(rows[0].contact_uri.ends_with(";transport=TCP"), "{rows:?}");
    assert!(bindings(&server, "2001").await.is_empty());
    assert_eq!(phones_of(&admin, "2002").await[0]["registered_now"], true);
    server.stop().await;
}

#[tokio::test]
async fn sipp_wrong_credentials_get_403() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|_| {}).await;
    let target = server.sip_addr(SipTransport::Udp);
    // A wrong password, an extension that does not exist, and the right credentials of
    // another extension: all 403, none binds anything.
    for (aor, user, password) in [
        ("2001", "2001", "not-the-secret"),
        ("7777", "7777", "whatever-secret"),
        ("2001", "2002", SECRET_2002),
    ] {
        Sipp::new("register_wrong_password.xml", target, aor)
            .auth(user, password)
            .passes()
            .await;
    }
    for ext in ["2001", "2002", "7777"] {
        assert!(bindings(&server, ext).await.is_empty(), "{ext}");
    }
    assert!(events_of(&server, "extension.registered").await.is_empty());
    let (status, phones) = admin.get("/api/registered-phones").await;
    assert_eq!((status, phones), (StatusCode::OK, serde_json::json!([])));
    server.stop().await;
}

#[tokio::test]
async fn sipp_stale_nonce_is_challenged_again() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, _admin) = server_with(|c| c.sip.nonce_lifetime = 1).await;
    Sipp::new(
        "register_stale_nonce.xml",
        server.sip_addr(SipTransport::Udp),
        "2001",
    )
    .auth("2001", SECRET_2001)
    .passes()
    .await;
    let rows = bindings(&server, "2001").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    // The refresh only moved the expiry a little, so it is held in memory (see
    // `registrar::refresh_only`); the binding there is the last REGISTER's.
    let sip = server.server.as_ref().unwrap().sip.clone();
    let held = sip
        .core
        .location
        .lookup("2001", switchboard::time::Timestamp::now());
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].cseq, 4,
        "the last REGISTER made the binding current"
    );
    assert_eq!(
        events_of(&server, "extension.registered").await.len(),
        1,
        "a refresh is not a new registration"
    );
    server.stop().await;
}

#[tokio::test]
async fn sipp_unregister_removes_the_binding() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, admin) = server_with(|_| {}).await;
    Sipp::new("unregister.xml", server.sip_addr(SipTransport::Udp), "2001")
        .auth("2001", SECRET_2001)
        .passes()
        .await;
    assert!(bindings(&server, "2001").await.is_empty());
    assert_eq!(events_of(&server, "extension.registered").await.len(), 1);
    let gone = events_of(&server, "extension.unregistered").await;
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["extension"], "2001");
    assert_eq!(gone[0]["reason"], "user");
    let phones = phones_of(&admin, "2001").await;
    assert_eq!(
        phones.len(),
        1,
        "the inventory keeps the device: {phones:?}"
    );
    assert_eq!(phones[0]["registered_now"], false);
    server.stop().await;
}

#[tokio::test]
async fn sipp_contact_star_removes_every_binding() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, _admin) = server_with(|_| {}).await;
    Sipp::new(
        "contact_star.xml",
        server.sip_addr(SipTransport::Udp),
        "2001",
    )
    .auth("2001", SECRET_2001)
    .passes()
    .await;
    assert!(bindings(&server, "2001").await.is_empty());
    assert_eq!(events_of(&server, "extension.registered").await.len(), 2);
    let gone = events_of(&server, "extension.unregistered").await;
    let mut contacts: Vec<&str> = gone.iter().filter_map(|e| e["contact"].as_str()).collect();
    contacts.sort_unstable();
    assert_eq!(contacts.len(), 2, "{gone:?}");
    assert!(
        contacts[0].starts_with("sip:2001-desk@127.0.0.1:"),
        "{gone:?}"
    );
    assert!(contacts[1].starts_with("sip:2001@127.0.0.1:"), "{gone:?}");
    server.stop().await;
}

#[tokio::test]
async fn sipp_too_brief_gets_423_then_registers_for_min_expires() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, _admin) = server_with(|_| {}).await;
    Sipp::new("too_brief.xml", server.sip_addr(SipTransport::Udp), "2001")
        .auth("2001", SECRET_2001)
        .passes()
        .await;
    let rows = bindings(&server, "2001").await;
    assert_eq!(
        rows.len(),
        1,
        "the 423 bound nothing, the retry did: {rows:?}"
    );
    assert!((55..=60).contains(&seconds_left(&rows[0])), "{rows:?}");
    server.stop().await;
}

#[tokio::test]
async fn sipp_malformed_requests_get_400_and_service_goes_on() {
    if !installed("sipp", "sip-tester") {
        return;
    }
    let (server, _admin) = server_with(|_| {}).await;
    // Straight to the server: no digest involved.
    Sipp::new("malformed.xml", server.sip_addr(SipTransport::Udp), "2001")
        .passes()
        .await;
    assert!(bindings(&server, "2001").await.is_empty());
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// baresip
// ---------------------------------------------------------------------------------------

/// Where baresip's modules are (Debian's place first), if it has `account.so`.
pub(crate) fn baresip_modules() -> Option<PathBuf> {
    let found = [
        "/usr/lib/baresip/modules",
        "/usr/lib64/baresip/modules",
        "/usr/local/lib/baresip/modules",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|dir| dir.join("account.so").is_file());
    if found.is_none() {
        skip_or_fail("baresip's modules (account.so) are not installed");
    }
    found
}

/// baresip 1.0 running headless with a configuration directory of its own: no audio,
/// no console, one account.
pub(crate) struct Baresip {
    child: tokio::process::Child,
    /// Everything it printed (`-s`: with the SIP trace).
    output: Arc<Mutex<String>>,
    /// The tasks reading stdout and stderr into `output`, done at EOF.
    readers: Vec<JoinHandle<()>>,
    listen: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Baresip {
    fn start(modules: &Path, account: &str) -> Self {
        Self::start_with(modules, account, "", &[])
    }

    /// With `config` lines added to the minimal configuration and `args` (e.g. `-e`
    /// commands) on its command line.
    pub(crate) fn start_with(modules: &Path, account: &str, config: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // The minimal set that registers: the account loader, no audio, video or UI.
        std::fs::write(
            dir.path().join("config"),
            format!(
                "poll_method\tepoll\nsip_listen\t{listen}\nmodule_path\t{}\nmodule_tmp\taccount.so\n{config}",
                modules.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("accounts"), format!("{account}\n")).unwrap();
        let mut child = tokio::process::Command::new("baresip")
            .arg("-f")
            .arg(dir.path())
            .arg("-s")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("baresip starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            readers.push(tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            }));
        }
        Self {
            child,
            output,
            readers,
            listen,
            _dir: dir,
        }
    }

    pub(crate) fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// SIGTERM (baresip unregisters its accounts, then exits) and the exit status, once
    /// all its output is in.
    /// Waits for it to exit by itself (`-t`), with all its output in.
    pub(crate) async fn wait(&mut self) -> ExitStatus {
        let status = self.child.wait().await.unwrap();
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }

    pub(crate) async fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().expect("still running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "baresip did not exit within 10 s of SIGTERM:\n{}",
                    self.output()
                )
            })
            .unwrap();
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;
        }
        status
    }
}

#[tokio::test]
async fn baresip_registers_and_unregisters_over_udp() {
    baresip_registers_and_unregisters(SipTransport::Udp).await;
}

#[tokio::test]
async fn baresip_registers_and_unregisters_over_tcp() {
    baresip_registers_and_unregisters(SipTransport::Tcp).await;
}

/// baresip registers extension 2002 on start and unregisters it when told to quit.
async fn baresip_registers_and_unregisters(transport: SipTransport) {
    if !installed("baresip", "baresip") {
        return;
    }
    let Some(modules) = baresip_modules() else {
        return;
    };
    // libre 1.x (baresip 1.0) gives up when any challenge names an algorithm it does not
    // know, even with MD5 offered first: such phones need `sip.digest_algorithms: [MD5]`.
    let (server, admin) =
        server_with(|c| c.sip.digest_algorithms = vec![switchboard::config::DigestAlgorithm::Md5])
            .await;
    let target = server.sip_addr(transport);
    let name = transport.as_str();
    let mut phone = Baresip::start(
        &modules,
        &format!("<sip:2002@{target};transport={name}>;auth_pass={SECRET_2002};regint=600"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = loop {
        if let Some(row) = bindings(&server, "2002").await.pop() {
            break row;
        }
        assert!(
            Instant::now() < deadline,
            "baresip did not register within 10 s:\n{}",
            phone.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        row.user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("baresip")),
        "{row:?}"
    );
    assert!(
        row.contact_uri.contains(&phone.listen.to_string()),
        "the contact is baresip's own address: {row:?}"
    );
    assert!((590..=600).contains(&seconds_left(&row)), "{row:?}");
    assert_eq!(row.transport, name);
    let phones = phones_of(&admin, "2002").await;
    assert_eq!(phones.len(), 1, "{phones:?}");
    assert_eq!(phones[0]["registered_now"], true, "{phones:?}");
    assert!(
        phones[0]["user_agent"]
            .as_str()
            .is_some_and(|ua| ua.contains("baresip")),
        "{phones:?}"
    );

    // On SIGTERM baresip sends REGISTER with expires=0 (challenged and answered like
    // the first) and exits once that is done.
    let status = phone.terminate().await;
    let output = phone.output();
    assert!(status.success(), "{status}\n{output}");
    eventually("baresip's binding to go", || async {
        bindings(&server, "2002").await.is_empty()
    })
    .await;
    let gone = events_of(&server, "extension.unregistered").await;
    assert_eq!(gone.len(), 1, "{gone:?}\n{output}");
    assert_eq!(gone[0]["extension"], "2002");
    assert_eq!(
        gone[0]["reason"], "user",
        "removed by the phone, not expired"
    );
    assert!(
        output.contains(";expires=0"),
        "the un-REGISTER is in the trace:\n{output}"
    );
    assert_eq!(
        output.matches("SIP/2.0 200 OK").count(),
        2,
        "baresip saw the register and the unregister succeed:\n{output}"
    );
    assert_eq!(phones_of(&admin, "2002").await[0]["registered_now"], false);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// sipsak
// ---------------------------------------------------------------------------------------

/// sipsak's own User-Agent ("sipsak 0.9.8.1") is on the default scanner list; keep it
/// from being blocked once scanner blocking is enforced.
fn allow_sipsak(config: &mut Config) {
    config
        .security
        .threat_detection
        .sip_scanner_user_agents
        .retain(|ua| !ua.eq_ignore_ascii_case("sipsak"));
}

async fn sipsak(args: &[&str]) -> (ExitStatus, String) {
    let mut cmd = tokio::process::Command::new("sipsak");
    cmd.args(["-H", "127.0.0.1", "-vv"]).args(args);
    let (status, stdout, stderr) = run(cmd).await;
    (
        status,
        format!("sipsak {args:?}: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"),
    )
}

#[tokio::test]
async fn sipsak_options_gets_200_with_allow() {
    if !installed("sipsak", "sipsak") {
        return;
    }
    let (server, _admin) = server_with(allow_sipsak).await;
    let uri = format!("sip:2001@{}", server.sip_addr(SipTransport::Udp));
    // Exit status 0: a 200 came back, and it matches --search.
    let (status, report) = sipsak(&["-s", &uri, "--search", "Allow: [^\r]*REGISTER"]).await;
    assert!(status.success(), "{report}");
    server.stop().await;
}

#[tokio::test]
async fn sipsak_registers_and_unregisters_with_digest() {
    if !installed("sipsak", "sipsak") {
        return;
    }
    let (server, _admin) = server_with(allow_sipsak).await;
    let uri = format!("sip:2001@{}", server.sip_addr(SipTransport::Udp));
    let port = free_port().to_string();
    let contact = format!("sip:2001@127.0.0.1:{port}");
    // -u: sipsak 0.9.8.1 would send the digest username "2001@" taken from the URI.
    let (status, report) = sipsak(&[
        "-U",
        "-s",
        &uri,
        "-u",
        "2001",
        "-a",
        SECRET_2001,
        "-l",
        &port,
        "-C",
        &contact,
        "-x",
        "600",
    ])
    .await;
    assert!(status.success(), "{report}");
    let rows = bindings(&server, "2001").await;
    assert_eq!(rows.len(), 1, "{rows:?}\n{report}");
    assert_eq!(rows[0].contact_uri, contact);
    assert!(
        rows[0]
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.starts_with("sipsak")),
        "{rows:?}"
    );

    let (status, report) = sipsak(&[
        "-U",
        "-s",
        &uri,
        "-u",
        "2001",
        "-a",
        SECRET_2001,
        "-C",
        &contact,
        "-x",
        "0",
    ])
    .await;
    assert!(status.success(), "{report}");
    assert!(bindings(&server, "2001").await.is_empty(), "{report}");
    assert_eq!(events_of(&server, "extension.unregistered").await.len(), 1);
    server.stop().await;
}
