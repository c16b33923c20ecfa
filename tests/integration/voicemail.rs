//! Voicemail: messages deposited through `VoicemailService::deposit` (the function the
//! phone-side IVR calls) and read, marked and deleted over the REST API; greetings
//! uploaded and checked; who may reach a mailbox; paths that try to leave the
//! voicemail directory; the outbox events. Every test runs on SQLite and PostgreSQL.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::features::voicemail::{MAX_GREETING_BYTES, VoicemailError, VoicemailService};
use switchboard::features::{Actor, ServiceError};
use switchboard::store::Backend;

use crate::harness::{Client, TestDb, TestServer, code};
use crate::interop::events_of;

fn voicemail(server: &TestServer) -> &VoicemailService {
    &server.server.as_ref().unwrap().app.voicemail
}

/// `ms` milliseconds of a tone at 8 kHz, distinct per `seed`.
fn tone(ms: usize, seed: i32) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| (((i as i32 * (37 + seed)) % 20_000) - 10_000) as i16)
        .collect()
}

/// A WAV file written by `hound` (not by the code under test).
pub(crate) fn wav(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for s in samples {
        for _ in 0..channels {
            w.write_sample(*s).unwrap();
        }
    }
    w.finalize().unwrap();
    out.into_inner()
}

/// The samples of a WAV file, read by `hound`; it must be 8 kHz, 16-bit, mono.
fn decode(bytes: &[u8]) -> Vec<i16> {
    let r = hound::WavReader::new(Cursor::new(bytes)).expect("a WAV file");
    let spec = r.spec();
    assert_eq!(
        (spec.sample_rate, spec.bits_per_sample, spec.channels),
        (8000, 16, 1)
    );
    r.into_samples::<i16>().map(Result::unwrap).collect()
}

fn mailbox_dir(server: &TestServer, extension: &str) -> PathBuf {
    server.config.data_dir.join("voicemail").join(extension)
}

/// The names of the files in `dir` (none when it does not exist), sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

async fn put_greeting(client: &Client, ext: &str, body: Vec<u8>) -> (StatusCode, Value) {
    client
        .raw(
            Method::PUT,
            &format!("/api/voicemail/{ext}/greeting"),
            "audio/wav",
            body,
        )
        .await
}

#[tokio::test]
async fn deposited_messages_are_listed_played_marked_read_and_deleted() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        let vm = voicemail(&server);

        let first_audio = tone(3000, 1);
        let first = vm
            .deposit("2001", "2002", "Bob \"B\" Smith", &first_audio)
            .await
            .unwrap();
        assert_eq!(first.duration_ms, 3000);
        let second_audio = tone(2500, 2);
        let second = vm.deposit("2001", "1001", "", &second_audio).await.unwrap();
        assert_ne!(first.id, second.id);

        // The file is where the docs say, named by the id.
        let dir = mailbox_dir(&server, "2001");
        let mut expected = vec![format!("{}.wav", first.id), format!("{}.wav", second.id)];
        expected.sort();
        assert_eq!(files_in(&dir), expected);

        // List: newest first, with the counts.
        let (status, body) = user.get("/api/voicemail/2001").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], 2);
        assert_eq!(body["counts"], json!({"new": 2, "saved": 0}));
        assert_eq!(body["greeting"], Value::Null);
        let ids: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [second.id.to_string(), first.id.to_string()]);
        let (status, page) = user.get("/api/voicemail/2001?limit=1&offset=1").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["items"][0]["id"], first.id.to_string());
        assert_eq!(page["total"], 2);

        // Metadata.
        let (status, meta) = user.get(&format!("/api/voicemail/2001/{}", first.id)).await;
        assert_eq!(status, StatusCode::OK, "{meta}");
        assert_eq!(meta["id"], first.id.to_string());
        assert_eq!(meta["extension"], "2001");
        assert_eq!(meta["caller"], "2002");
        assert_eq!(meta["caller_name"], "Bob \"B\" Smith");
        assert_eq!(meta["duration_ms"], 3000);
        assert_eq!(meta["folder"], "new");
        assert_eq!(meta["received_at"], json!(first.received_at));

        // Audio: a WAV file holding exactly what was deposited.
        let (status, content_type, length, bytes) = user
            .get_bytes(&format!("/api/voicemail/2001/{}/audio", first.id))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("audio/wav"));
        assert_eq!(length, Some(bytes.len() as u64));
        assert_eq!(decode(&bytes), first_audio);
        assert_eq!(
            vm.audio("2001", second.id)
                .await
                .map(|b| decode(&b))
                .unwrap(),
            second_audio
        );

        // Mark read: new → saved, once.
        for _ in 0..2 {
            let (status, read) = user
                .post(&format!("/api/voicemail/2001/{}/read", first.id), json!({}))
                .await;
            assert_eq!(status, StatusCode::OK, "{read}");
            assert_eq!(read["folder"], "saved");
        }
        let counts = vm.counts("2001").await.unwrap();
        assert_eq!((counts.new, counts.saved), (1, 1));
        let (_, body) = user.get("/api/voicemail/2001").await;
        assert_eq!(body["counts"], json!({"new": 1, "saved": 1}));

        // Delete: the row and the file.
        let (status, body) = user
            .delete(&format!("/api/voicemail/2001/{}", first.id))
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(files_in(&dir), [format!("{}.wav", second.id)]);
        for path in [
            format!("/api/voicemail/2001/{}", first.id),
            format!("/api/voicemail/2001/{}/audio", first.id),
        ] {
            let (status, body) = user.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(code(&body), "not_found");
        }
        let (status, _) = user
            .delete(&format!("/api/voicemail/2001/{}", first.id))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let counts = vm.counts("2001").await.unwrap();
        assert_eq!((counts.new, counts.saved), (1, 0));

        // The outbox: received with the documented payload, read once, deleted once.
        let received = events_of(&server, "voicemail.received").await;
        assert_eq!(received.len(), 2);
        assert_eq!(
            received[0],
            json!({
                "message_id": first.id.to_string(),
                "extension": "2001",
                "caller": "2002",
                "caller_name": "Bob \"B\" Smith",
                "duration_ms": 3000,
                "received_at": first.received_at,
            })
        );
        assert_eq!(received[1]["message_id"], second.id.to_string());
        assert_eq!(
            events_of(&server, "voicemail.read").await,
            [
                json!({"message_id": first.id.to_string(), "extension": "2001", "folder": "new", "actor": "extension:2001"})
            ]
        );
        assert_eq!(
            events_of(&server, "voicemail.deleted").await,
            [
                json!({"message_id": first.id.to_string(), "extension": "2001", "folder": "saved", "actor": "extension:2001"})
            ]
        );

        // Messages survive a restart (rows and files).
        let server = server.restart().await;
        let (status, body) = admin_again(&server).await.get("/api/voicemail/2001").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["items"][0]["id"], second.id.to_string());
        server.stop().await;
    }
}

/// A logged-in admin after a restart (the password was changed already).
async fn admin_again(server: &TestServer) -> Client {
    let mut c = server.client();
    let (status, body) = c
        .post(
            "/api/auth/login",
            json!({"extension": "1001", "password": crate::harness::NEW_ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    c.token = Some(body["token"].as_str().unwrap().to_owned());
    c
}

#[tokio::test]
async fn deposits_that_cannot_be_kept_leave_nothing_behind() {
    for db in TestDb::all().await {
        let backend = db.backend;
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        server.user(&admin, "2001").await;
        let vm = voicemail(&server);
        let dir = mailbox_dir(&server, "2001");

        // Shorter than voicemail.min_message_seconds (2 s): discarded.
        match vm.deposit("2001", "2002", "Bob", &tone(1900, 1)).await {
            Err(VoicemailError::TooShort {
                duration_ms: 1900,
                min_seconds: 2,
            }) => {}
            other => panic!("a 1.9 s recording was not refused as too short: {other:?}"),
        }
        match vm.deposit("2001", "2002", "Bob", &[]).await {
            Err(VoicemailError::TooShort { .. }) => {}
            other => panic!("an empty recording was kept: {other:?}"),
        }
        // Unknown mailbox; mailbox with voicemail disabled.
        assert!(matches!(
            vm.deposit("7777", "2002", "Bob", &tone(3000, 1)).await,
            Err(VoicemailError::Service(ServiceError::NotFound { .. }))
        ));
        let (status, body) = admin
            .patch("/api/extensions/2001", json!({"voicemail_enabled": false}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(matches!(
            vm.deposit("2001", "2002", "Bob", &tone(3000, 1)).await,
            Err(VoicemailError::Disabled(_))
        ));
        let (status, body) = admin
            .patch("/api/extensions/2001", json!({"voicemail_enabled": true}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The transaction fails (the outbox refuses the event): no row, no event, and
        // the file written before it is removed again.
        let pool = server.db().pool();
        match backend {
            Backend::Sqlite => {
                sqlx::query(
                    "CREATE TRIGGER refuse_voicemail BEFORE INSERT ON events \
                     WHEN NEW.event_type = 'voicemail.received' \
                     BEGIN SELECT RAISE(ABORT, 'outbox refuses'); END",
                )
                .execute(pool)
                .await
                .unwrap();
            }
            Backend::Postgres => {
                sqlx::query(
                    "CREATE FUNCTION refuse_voicemail() RETURNS trigger AS $$ BEGIN \
                     IF NEW.event_type = 'voicemail.received' THEN RAISE EXCEPTION 'outbox refuses'; END IF; \
                     RETURN NEW; END $$ LANGUAGE plpgsql",
                )
                .execute(pool)
                .await
                .unwrap();
                sqlx::query(
                    "CREATE TRIGGER refuse_voicemail BEFORE INSERT ON events \
                     FOR EACH ROW EXECUTE FUNCTION refuse_voicemail()",
                )
                .execute(pool)
                .await
                .unwrap();
            }
        }
        match vm.deposit("2001", "2002", "Bob", &tone(3000, 1)).await {
            Err(VoicemailError::Service(ServiceError::Store(_))) => {}
            other => panic!("the deposit did not fail with the database: {other:?}"),
        }
        let drop = match backend {
            Backend::Sqlite => "DROP TRIGGER refuse_voicemail",
            Backend::Postgres => "DROP TRIGGER refuse_voicemail ON events",
        };
        sqlx::query(drop).execute(pool).await.unwrap();

        assert!(vm.list("2001").await.unwrap().is_empty());
        assert_eq!(
            files_in(&dir),
            Vec::<String>::new(),
            "no file may outlive a refused deposit"
        );
        assert!(events_of(&server, "voicemail.received").await.is_empty());

        // And the box works again once the database does.
        let kept = vm
            .deposit("2001", "2002", "Bob", &tone(2000, 1))
            .await
            .unwrap();
        assert_eq!(kept.duration_ms, 2000);
        assert_eq!(files_in(&dir), [format!("{}.wav", kept.id)]);
        server.stop().await;
    }
}

#[tokio::test]
async fn greetings_are_validated_stored_played_and_removed() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let user = server.user(&admin, "2001").await;
        let vm = voicemail(&server);
        assert_eq!(vm.greeting("2001").await.unwrap(), None);

        let samples = tone(2000, 5);
        let (status, body) = put_greeting(&user, "2001", wav(&samples, 8000, 1)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["duration_ms"], 2000);
        assert_eq!(vm.greeting("2001").await.unwrap(), Some(samples.clone()));
        let (status, content_type, length, bytes) =
            user.get_bytes("/api/voicemail/2001/greeting").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(content_type.as_deref(), Some("audio/wav"));
        assert_eq!(length, Some(bytes.len() as u64));
        assert_eq!(decode(&bytes), samples);
        assert!(mailbox_dir(&server, "2001").join("greeting.wav").is_file());
        let (_, mailbox) = user.get("/api/voicemail/2001").await;
        assert_eq!(mailbox["greeting"]["duration_ms"], 2000);

        // A new upload replaces it.
        let newer = tone(4000, 6);
        let (status, body) = put_greeting(&user, "2001", wav(&newer, 8000, 1)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(vm.greeting("2001").await.unwrap(), Some(newer.clone()));

        // Refused, each with a 400 that says what is wrong; the greeting stays.
        let stereo = wav(&tone(2000, 1), 8000, 2);
        let cd_rate = wav(&tone(2000, 1), 44_100, 1);
        let mut text_with_header = b"RIFF\x10\x00\x00\x00WAVE".to_vec();
        text_with_header.extend_from_slice(b"not really audio");
        let too_long = wav(&tone(61000, 1), 8000, 1);
        let empty = wav(&[], 8000, 1);
        for (what, body, says) in [
            ("stereo", stereo, vec!["channel", "mono", "stereo"]),
            (
                "44.1 kHz",
                cd_rate,
                vec!["44100", "44 100", "44.1", "sample rate"],
            ),
            (
                "garbage",
                b"hello, this is not a WAV file".to_vec(),
                vec!["wav", "riff"],
            ),
            (
                "a broken WAV",
                text_with_header,
                vec!["wav", "riff", "fmt", "chunk", "data"],
            ),
            ("61 s", too_long, vec!["60 s"]),
            ("no samples", empty, vec!["empty"]),
        ] {
            let (status, err) = put_greeting(&user, "2001", body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {err}");
            assert_eq!(code(&err), "invalid_field", "{what}: {err}");
            assert_eq!(err["error"]["field"], "greeting", "{what}: {err}");
            let message = err["error"]["message"].as_str().unwrap().to_lowercase();
            assert!(
                says.iter().any(|s| message.contains(&s.to_lowercase())),
                "{what}: the message should name the problem ({says:?}): {message}"
            );
        }
        // Not sent as a WAV file; larger than any minute of audio.
        let (status, err) = user
            .raw(
                Method::PUT,
                "/api/voicemail/2001/greeting",
                "application/json",
                "{}",
            )
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{err}");
        assert_eq!(code(&err), "unsupported_media_type");
        let (status, err) = put_greeting(&user, "2001", vec![0; MAX_GREETING_BYTES + 1000]).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
        assert_eq!(code(&err), "payload_too_large");
        assert_eq!(vm.greeting("2001").await.unwrap(), Some(newer));

        // Removed: callers hear the default again.
        let (status, body) = user.delete("/api/voicemail/2001/greeting").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        assert_eq!(vm.greeting("2001").await.unwrap(), None);
        assert!(!mailbox_dir(&server, "2001").join("greeting.wav").exists());
        let (status, _) = user.get("/api/voicemail/2001/greeting").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = user.delete("/api/voicemail/2001/greeting").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // What the phone menu records goes through the same rules.
        let recorded = tone(3000, 7);
        vm.record_greeting("2001", &recorded).await.unwrap();
        assert_eq!(vm.greeting("2001").await.unwrap(), Some(recorded));
        server.stop().await;
    }
}

#[tokio::test]
async fn only_the_owner_or_an_admin_reaches_a_mailbox() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        let owner = server.user(&admin, "2001").await;
        let other = server.user(&admin, "2002").await;
        let anonymous = server.client();
        let vm = voicemail(&server);
        let msg = vm
            .deposit("2001", "2002", "Bob", &tone(2000, 1))
            .await
            .unwrap();
        let id = msg.id;
        let greeting = wav(&tone(2000, 3), 8000, 1);

        let m = |path: &str| path.replace("{id}", &id.to_string());
        let endpoints = [
            (Method::GET, m("/api/voicemail/2001")),
            (Method::GET, m("/api/voicemail/2001/{id}")),
            (Method::GET, m("/api/voicemail/2001/{id}/audio")),
            (Method::POST, m("/api/voicemail/2001/{id}/read")),
            (Method::PUT, m("/api/voicemail/2001/greeting")),
            (Method::GET, m("/api/voicemail/2001/greeting")),
            (Method::DELETE, m("/api/voicemail/2001/greeting")),
            (Method::DELETE, m("/api/voicemail/2001/{id}")),
        ];
        for (method, path) in &endpoints {
            let send = |client: &Client| {
                let client = client.clone();
                let (method, path, greeting) = (method.clone(), path.clone(), greeting.clone());
                async move {
                    if method == Method::PUT {
                        client.raw(method, &path, "audio/wav", greeting).await
                    } else {
                        client.send(method, &path, None).await
                    }
                }
            };
            let (status, err) = send(&anonymous).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {err}");
            assert_eq!(code(&err), "unauthenticated");
            let (status, err) = send(&other).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as 2002: {err}"
            );
            assert_eq!(code(&err), "forbidden");
            let (status, body) = send(&admin).await;
            assert!(
                status.is_success(),
                "{method} {path} as an admin: {status} {body}"
            );
        }
        // The admin deleted the message above; the owner reaches their own box.
        let (status, body) = owner.get("/api/voicemail/2001").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], 0);
        assert_eq!(
            events_of(&server, "voicemail.deleted").await[0]["actor"],
            "extension:1001"
        );
        // Another user's box stays closed even when it is empty, and the owner may
        // not look into the admin's.
        let (status, _) = owner.get("/api/voicemail/1001").await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        // Unknown mailboxes and messages are 404.
        for path in [
            "/api/voicemail/7777".to_owned(),
            format!("/api/voicemail/2001/{}", uuid::Uuid::now_v7()),
            format!("/api/voicemail/2001/{}/audio", uuid::Uuid::now_v7()),
            format!("/api/voicemail/7777/{id}"),
        ] {
            let (status, err) = admin.get(&path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {err}");
            assert_eq!(code(&err), "not_found");
        }
        let (status, _) = admin
            .post(
                &format!("/api/voicemail/2001/{}/read", uuid::Uuid::now_v7()),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = put_greeting(&admin, "7777", greeting.clone()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The service refuses what the API would (the IVR asks by extension too).
        assert!(matches!(
            vm.mark_read(&Actor::System, "2001", uuid::Uuid::now_v7())
                .await,
            Err(VoicemailError::Service(ServiceError::NotFound { .. }))
        ));
        server.stop().await;
    }
}

#[tokio::test]
async fn paths_cannot_leave_the_voicemail_directory() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        server.user(&admin, "2001").await;
        let vm = voicemail(&server);
        let msg = vm
            .deposit("2001", "2002", "Bob", &tone(2000, 1))
            .await
            .unwrap();
        // A file the traversals aim at.
        std::fs::write(server.config.data_dir.join("secret.wav"), b"secret").unwrap();

        for (path, field) in [
            ("/api/voicemail/..%2F..%2Fetc".to_owned(), "number"),
            ("/api/voicemail/%2E%2E%2Fetc".to_owned(), "number"),
            ("/api/voicemail/2001%2F..%2F..".to_owned(), "number"),
            (
                "/api/voicemail/..%2Fsecret.wav/greeting".to_owned(),
                "number",
            ),
            (
                "/api/voicemail/2001/..%2F..%2Fsecret/audio".to_owned(),
                "id",
            ),
            (
                "/api/voicemail/2001/%2E%2E%2F%2E%2E%2Fsecret".to_owned(),
                "id",
            ),
            ("/api/voicemail/2001/not-a-uuid".to_owned(), "id"),
            (
                format!("/api/voicemail/2001/{}%2F..%2F..%2Fsecret/audio", msg.id),
                "id",
            ),
        ] {
            let (status, err) = admin.get(&path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
            assert_eq!(code(&err), "invalid_path", "{path}: {err}");
            assert_eq!(err["error"]["field"], field, "{path}: {err}");
        }
        let (status, err) = admin
            .raw(
                Method::PUT,
                "/api/voicemail/..%2F..%2Ftmp/greeting",
                "audio/wav",
                wav(&tone(2000, 1), 8000, 1),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");

        // The service checks for itself, whoever calls it.
        for extension in ["../2001", "2001/..", "..", "/tmp/x", "2001\0", "", "A1"] {
            assert!(
                matches!(
                    vm.deposit(extension, "2002", "Bob", &tone(3000, 1)).await,
                    Err(VoicemailError::Service(ServiceError::Invalid { .. }))
                ),
                "deposit for {extension:?}"
            );
            assert!(
                vm.set_greeting(extension, &wav(&tone(2000, 1), 8000, 1))
                    .await
                    .is_err(),
                "greeting for {extension:?}"
            );
        }
        // Nothing was written outside the mailboxes of real extensions.
        let root = server.config.data_dir.join("voicemail");
        assert_eq!(files_in(&root), ["2001"]);
        assert_eq!(files_in(&root.join("2001")), [format!("{}.wav", msg.id)]);
        server.stop().await;
    }
}

#[tokio::test]
async fn a_deleted_extension_takes_its_voicemail_along() {
    for db in TestDb::all().await {
        let server = TestServer::start(db).await;
        let admin = server.admin().await;
        server.user(&admin, "2001").await;
        server.user(&admin, "2003").await;
        let vm = voicemail(&server);
        let kept = vm
            .deposit("2001", "2002", "Bob", &tone(2000, 1))
            .await
            .unwrap();
        vm.deposit("2003", "2002", "Bob", &tone(2000, 1))
            .await
            .unwrap();
        vm.record_greeting("2003", &tone(2000, 2)).await.unwrap();

        let (status, body) = admin.delete("/api/extensions/2003").await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        // The rows went with the extension (a new 2003 starts with an empty box).
        let (status, _) = admin.get("/api/voicemail/2003").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        server.user(&admin, "2003").await;
        let (status, body) = admin.get("/api/voicemail/2003").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["total"], 0);
        assert_eq!(body["greeting"], Value::Null);
        assert_eq!(vm.greeting("2003").await.unwrap(), None);

        // Its files, and a file left by a crash between write and commit, are swept;
        // fresh files are spared (a deposit in progress), known ones kept.
        let stray = mailbox_dir(&server, "2001").join(format!("{}.wav", uuid::Uuid::now_v7()));
        std::fs::write(&stray, b"RIFF").unwrap();
        assert_eq!(vm.sweep(Duration::from_secs(3600)).await.unwrap(), 0);
        assert_eq!(vm.sweep(Duration::ZERO).await.unwrap(), 3);
        assert!(!stray.exists());
        assert_eq!(
            files_in(&mailbox_dir(&server, "2003")),
            Vec::<String>::new()
        );
        assert_eq!(
            files_in(&mailbox_dir(&server, "2001")),
            [format!("{}.wav", kept.id)]
        );
        server.stop().await;
    }
}
