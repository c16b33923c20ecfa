//! Voicemail e-mail notifications: a message deposited through `VoicemailService::deposit`
//! is mailed to the mailbox owner with the recording attached, through a fake SMTP
//! server written here (plain SMTP on 127.0.0.1, no TLS). No mail when
//! `voicemail.email_notifications` is off or the extension has no address, and a
//! mail server that is down or refuses never fails the deposit. SQLite only: the
//! storage side is covered on both databases by `voicemail.rs`.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::json;
use switchboard::config::SmtpSecurity;
use switchboard::features::voicemail::VoicemailService;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::harness::{Client, TestDb, TestServer, test_config};

/// One mail as the fake server received it.
#[derive(Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// The DATA, dot-unstuffed, lines ending in CRLF.
    data: String,
}

/// A fake SMTP server on 127.0.0.1: enough of RFC 5321 for one client (EHLO/HELO,
/// MAIL, RCPT, DATA, RSET, NOOP, QUIT). With `refuse`, it answers every connection
/// with `554` and hangs up.
struct FakeSmtp {
    addr: SocketAddr,
    mails: mpsc::UnboundedReceiver<Mail>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeSmtp {
    async fn start(refuse: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mails) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = session(socket, tx, refuse).await;
                });
            }
        });
        Self { addr, mails, task }
    }

    /// The next mail, waiting up to 15 s.
    async fn next(&mut self) -> Mail {
        tokio::time::timeout(Duration::from_secs(15), self.mails.recv())
            .await
            .expect("a mail within 15 s")
            .expect("the fake server is running")
    }

    /// Asserts that no mail arrives within `wait`.
    async fn assert_none(&mut self, wait: Duration) {
        if let Ok(Some(mail)) = tokio::time::timeout(wait, self.mails.recv()).await {
            panic!("unexpected mail to {:?}", mail.to);
        }
    }
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn session(
    socket: TcpStream,
    mails: mpsc::UnboundedSender<Mail>,
    refuse: bool,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    if refuse {
        write
            .write_all(b"554 5.3.2 fake.test refuses mail\r\n")
            .await?;
        return Ok(());
    }
    write.write_all(b"220 fake.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250 fake.test\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&command["MAIL FROM:".len()..]);
            to.clear();
            b"250 2.1.0 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&command["RCPT TO:".len()..]));
            b"250 2.1.5 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let _ = mails.send(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 2.0.0 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 2.0.0 OK\r\n"
        } else {
            b"502 5.5.1 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// `<a@b> PARAMS` → `a@b`.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let arg = arg.split_whitespace().next().unwrap_or("");
    arg.trim_matches(['<', '>']).to_owned()
}

/// Headers and body of a MIME entity (headers unfolded).
fn split_entity(text: &str) -> (String, &str) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    (head.replace("\r\n ", " ").replace("\r\n\t", " "), body)
}

/// The value of header `name` in unfolded `head`.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A header value with its RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`)
/// decoded; the space between two encoded words goes, as the RFC says.
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut last_encoded = false;
    for token in value.split(' ').filter(|t| !t.is_empty()) {
        let word = token
            .strip_prefix("=?")
            .and_then(|t| t.strip_suffix("?="))
            .and_then(|t| {
                let mut parts = t.splitn(3, '?');
                let (_charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
                let bytes = match encoding {
                    "b" | "B" => base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .ok()?,
                    "q" | "Q" => q_decode(text),
                    _ => return None,
                };
                String::from_utf8(bytes).ok()
            });
        match word {
            Some(decoded) => {
                if !out.is_empty() && !last_encoded {
                    out.push(' ');
                }
                out.push_str(&decoded);
                last_encoded = true;
            }
            None => {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(token);
                last_encoded = false;
            }
        }
    }
    out
}

fn q_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => out.push(b' '),
            b'=' if i + 2 < bytes.len() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The parts of a `multipart/*` mail: (headers, body) each.
fn parts(data: &str) -> Vec<(String, String)> {
    let (head, body) = split_entity(data);
    let content_type = header(&head, "content-type").expect("a Content-Type");
    assert!(
        content_type.starts_with("multipart/mixed"),
        "{content_type}"
    );
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str())
        .skip(1)
        .take_while(|p| !p.starts_with("--"))
        .map(|p| {
            let (h, b) = split_entity(p.trim_start_matches("\r\n"));
            (h, b.to_owned())
        })
        .collect()
}

/// `ms` milliseconds of a tone at 8 kHz.
fn tone(ms: usize, seed: i32) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (((i as i32 * (41 + seed)) % 20_000) - 10_000) as i16)
        .collect()
}

fn voicemail(server: &TestServer) -> &VoicemailService {
    &server.server.as_ref().unwrap().app.voicemail
}

/// A server on SQLite whose SMTP is plain SMTP to 127.0.0.1:`port`.
async fn server_with_smtp(port: u16, email_notifications: bool) -> TestServer {
    let db = TestDb::sqlite().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, data_dir.path());
    config.timezone = "Europe/Paris".into();
    config.smtp.host = Some("127.0.0.1".into());
    config.smtp.port = port;
    config.smtp.security = SmtpSecurity::None;
    config.smtp.from = "Office PBX <pbx@example.test>".into();
    config.voicemail.email_notifications = email_notifications;
    TestServer::start_with(db, data_dir, config).await
}

async fn extension(admin: &Client, number: &str, name: &str, email: Option<&str>) {
    let (status, body) = admin
        .post(
            "/api/extensions",
            json!({"number": number, "name": name, "email": email}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_new_message_is_mailed_to_the_owner_with_the_recording() {
    let mut smtp = FakeSmtp::start(false).await;
    let server = server_with_smtp(smtp.addr.port(), true).await;
    let admin = server.admin().await;
    extension(&admin, "2001", "Alice Martin", Some("alice@example.test")).await;
    extension(&admin, "2002", "No Mail", None).await;
    let vm = voicemail(&server);

    // The extension without an address gets nothing.
    vm.deposit("2002", "2001", "Alice", &tone(2500, 0))
        .await
        .unwrap();
    let audio = tone(3200, 1);
    let message = vm
        .deposit("2001", "0611223344", "Bob Smith", &audio)
        .await
        .unwrap();

    let mail = smtp.next().await;
    assert_eq!(mail.to, ["alice@example.test"]);
    assert_eq!(mail.from, "pbx@example.test");
    let (head, _) = split_entity(&mail.data);
    let to = header(&head, "to").unwrap();
    assert!(to.contains("<alice@example.test>"), "{to}");
    let from = header(&head, "from").unwrap();
    assert!(from.contains("<pbx@example.test>"), "{from}");
    let subject = decode_words(header(&head, "subject").unwrap());
    assert_eq!(subject, "New voicemail from Bob Smith (0611223344) — 0:03");

    let parts = parts(&mail.data);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (text_head, text) = &parts[0];
    assert!(
        header(text_head, "content-type")
            .unwrap()
            .starts_with("text/plain"),
        "{text_head}"
    );
    assert!(text.contains("Bob Smith (0611223344)"), "{text}");
    assert!(text.contains("0:03"), "{text}");
    // The time is shown in `timezone` (Europe/Paris: CET or CEST).
    assert!(text.contains(" CET") || text.contains(" CEST"), "{text}");

    let (wav_head, wav_body) = &parts[1];
    assert_eq!(header(wav_head, "content-type").unwrap(), "audio/wav");
    assert!(
        header(wav_head, "content-transfer-encoding")
            .unwrap()
            .eq_ignore_ascii_case("base64")
    );
    let disposition = header(wav_head, "content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment") && disposition.contains("filename=\"voicemail-"),
        "{disposition}"
    );
    let encoded: String = wav_body.chars().filter(|c| !c.is_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.bits_per_sample, spec.channels),
        (8000, 16, 1)
    );
    let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    assert_eq!(samples, audio);
    assert_eq!(message.duration_ms, 3200);

    // One mail, not one per deposit.
    smtp.assert_none(Duration::from_millis(1500)).await;
    server.stop().await;
}

#[tokio::test]
async fn no_mail_when_notifications_are_off() {
    let mut smtp = FakeSmtp::start(false).await;
    let server = server_with_smtp(smtp.addr.port(), false).await;
    let admin = server.admin().await;
    extension(&admin, "2001", "Alice Martin", Some("alice@example.test")).await;
    let vm = voicemail(&server);
    vm.deposit("2001", "2002", "Bob", &tone(2500, 2))
        .await
        .unwrap();
    assert_eq!(vm.list("2001").await.unwrap().len(), 1);
    smtp.assert_none(Duration::from_millis(1500)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_mail_server_down_or_refusing_never_fails_the_deposit() {
    // Down: a port where nothing listens any more.
    let down = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refusing = FakeSmtp::start(true).await;
    for port in [down, refusing.addr.port()] {
        let server = server_with_smtp(port, true).await;
        let admin = server.admin().await;
        extension(&admin, "2001", "Alice Martin", Some("alice@example.test")).await;
        let vm = voicemail(&server);
        let audio = tone(2500, 3);
        let message = vm.deposit("2001", "2002", "Bob", &audio).await.unwrap();
        let listed = vm.list("2001").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0], message);
        let wav = vm.audio("2001", message.id).await.unwrap();
        let samples: Vec<i16> = hound::WavReader::new(Cursor::new(wav))
            .unwrap()
            .into_samples()
            .map(Result::unwrap)
            .collect();
        assert_eq!(samples, audio);
        // Give the background attempt time to fail; the server keeps working.
        tokio::time::sleep(Duration::from_millis(300)).await;
        vm.deposit("2001", "2002", "Bob", &tone(2500, 4))
            .await
            .unwrap();
        assert_eq!(vm.list("2001").await.unwrap().len(), 2);
        server.stop().await;
    }
}
