//! The store on both backends: migrations, each table group, the outbox's
//! transactional behaviour.

use switchboard::role::Role;
use switchboard::store::extensions::{self, ExtensionRow, ListFilter};
use switchboard::store::{Backend, api_keys, events, is_unique_violation, sessions};
use switchboard::time::Timestamp;

use crate::harness::TestDb;

fn row(number: &str, role: Role) -> ExtensionRow {
    ExtensionRow {
        number: number.into(),
        name: format!("Name {number}"),
        email: Some(format!("{number}@example.com")),
        role,
        allow_external: true,
        voicemail_enabled: false,
        forward_target: Some("2000".into()),
        forward_when: Some("busy".into()),
        active: true,
        ad_synced: false,
        ad_username: None,
        password_hash: Some("$argon2id$x".into()),
        must_change_password: true,
        sip_realm: Some("switchboard".into()),
        sip_ha1_md5: Some("a".repeat(32)),
        sip_ha1_sha256: Some("b".repeat(64)),
        voicemail_pin_hash: None,
        created_at: Timestamp(1_700_000_000_123),
        updated_at: Timestamp(1_700_000_000_123),
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    for tdb in TestDb::all().await {
        let db = tdb.open().await;
        db.migrate().await.unwrap();
        db.ping().await.unwrap();
        assert_eq!(db.backend(), tdb.backend);
        db.close().await;
    }
}

#[tokio::test]
async fn extensions_round_trip_and_conflict() {
    for tdb in TestDb::all().await {
        let db = tdb.open().await;
        let mut tx = db.begin().await.unwrap();
        let r = row("1001", Role::Admin);
        extensions::insert(&mut tx, &r).await.unwrap();
        extensions::insert(&mut tx, &row("2", Role::User))
            .await
            .unwrap();
        extensions::insert(&mut tx, &row("webrtc-admin", Role::User))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let got = extensions::get(db.pool(), "1001").await.unwrap().unwrap();
        assert_eq!(got, r, "{:?}", tdb.backend);

        let mut tx = db.begin().await.unwrap();
        let err = extensions::insert(&mut tx, &r).await.unwrap_err();
        assert!(is_unique_violation(&err), "{err}");
        drop(tx);
        let mut conn = db.pool().acquire().await.unwrap();
        assert!(!extensions::insert_if_absent(&mut conn, &r).await.unwrap());

        let mut changed = got.clone();
        changed.name = "Operator".into();
        changed.active = false;
        changed.forward_target = None;
        changed.forward_when = None;
        assert!(extensions::update(&mut conn, &changed).await.unwrap());
        assert_eq!(
            extensions::get(db.pool(), "1001").await.unwrap().unwrap(),
            changed
        );

        let all = extensions::list(db.pool(), &ListFilter::default(), 10, 0)
            .await
            .unwrap();
        let numbers: Vec<_> = all.iter().map(|r| r.number.as_str()).collect();
        assert_eq!(numbers, ["2", "1001", "webrtc-admin"]);
        let active = ListFilter {
            active: Some(true),
            ..Default::default()
        };
        assert_eq!(extensions::count(db.pool(), &active).await.unwrap(), 2);
        let search = ListFilter {
            search: Some("WEBRTC".into()),
            ..Default::default()
        };
        assert_eq!(extensions::count(db.pool(), &search).await.unwrap(), 1);
        let literal = ListFilter {
            search: Some("%".into()),
            ..Default::default()
        };
        assert_eq!(
            extensions::count(db.pool(), &literal).await.unwrap(),
            0,
            "% is matched literally"
        );
        let page = extensions::list(db.pool(), &ListFilter::default(), 1, 1)
            .await
            .unwrap();
        assert_eq!(page[0].number, "1001");

        assert_eq!(
            extensions::count_active_admins(&mut conn, None)
                .await
                .unwrap(),
            0
        );
        assert!(extensions::delete(&mut conn, "2").await.unwrap());
        assert!(!extensions::delete(&mut conn, "2").await.unwrap());
        drop(conn);
        db.close().await;
    }
}

#[tokio::test]
async fn sessions_expire_and_cascade() {
    for tdb in TestDb::all().await {
        let db = tdb.open().await;
        let mut conn = db.pool().acquire().await.unwrap();
        extensions::insert(&mut conn, &row("1001", Role::Admin))
            .await
            .unwrap();
        for (hash, last_seen, expires) in [
            ("a", 1_000, 10_000_000),
            ("b", 5_000_000, 6_000_000),
            ("c", 9_000_000, 99_000_000),
        ] {
            sessions::insert(
                &mut conn,
                &sessions::NewSession {
                    token_hash: hash,
                    extension: "1001",
                    csrf_token: "csrf",
                    now: Timestamp(last_seen),
                    expires_at: Timestamp(expires),
                    ip_address: Some("127.0.0.1"),
                    user_agent: None,
                },
            )
            .await
            .unwrap();
        }
        let s = sessions::find(db.pool(), "a").await.unwrap().unwrap();
        assert_eq!(s.role, Role::Admin);
        assert!(s.active && s.must_change_password);
        sessions::touch(db.pool(), "a", Timestamp(8_500_000))
            .await
            .unwrap();
        // At 9,000,000 with a 1,000 s idle limit: b is past its absolute expiry.
        assert_eq!(
            sessions::delete_expired(db.pool(), Timestamp(9_000_000), 1000)
                .await
                .unwrap(),
            1
        );
        assert!(sessions::find(db.pool(), "b").await.unwrap().is_none());
        assert_eq!(
            sessions::delete_for_extension(&mut conn, "1001", Some("c"))
                .await
                .unwrap(),
            1
        );
        assert!(sessions::find(db.pool(), "c").await.unwrap().is_some());
        extensions::delete(&mut conn, "1001").await.unwrap();
        assert!(
            sessions::find(db.pool(), "c").await.unwrap().is_none(),
            "deleting the extension removes its sessions"
        );
        drop(conn);
        db.close().await;
    }
}

#[tokio::test]
async fn outbox_commits_and_rolls_back_with_the_change() {
    for tdb in TestDb::all().await {
        let db = tdb.open().await;
        let mut tx = db.begin().await.unwrap();
        extensions::insert(&mut tx, &row("3001", Role::User))
            .await
            .unwrap();
        events::append(
            &mut tx,
            "id-1",
            "extension.created",
            Timestamp(1),
            r#"{"n":1}"#,
        )
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        assert!(
            events::after(db.pool(), 0, 10).await.unwrap().is_empty(),
            "a rolled-back change leaves no event"
        );
        assert!(extensions::get(db.pool(), "3001").await.unwrap().is_none());

        let mut tx = db.begin().await.unwrap();
        extensions::insert(&mut tx, &row("3001", Role::User))
            .await
            .unwrap();
        events::append(
            &mut tx,
            "id-2",
            "extension.created",
            Timestamp(2),
            r#"{"n":2}"#,
        )
        .await
        .unwrap();
        events::append(
            &mut tx,
            "id-3",
            "extension.updated",
            Timestamp(3),
            r#"{"n":3}"#,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let evs = events::after(db.pool(), 0, 10).await.unwrap();
        assert_eq!(
            evs.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
            ["id-2", "id-3"]
        );
        assert!(evs[0].seq < evs[1].seq);
        assert_eq!(evs[1].data["n"], 3);
        assert_eq!(
            events::after(db.pool(), evs[0].seq, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        db.close().await;
    }
}

#[tokio::test]
async fn api_keys_round_trip() {
    for tdb in TestDb::all().await {
        let db = tdb.open().await;
        let key = api_keys::ApiKeyRow {
            id: "k1".into(),
            name: "crm".into(),
            key_hash: "hash".into(),
            role: Role::Admin,
            extension: None,
            created_by: Some("cli".into()),
            created_at: Timestamp(10),
            last_used_at: None,
        };
        api_keys::insert(db.pool(), &key).await.unwrap();
        let found = api_keys::find_by_hash(db.pool(), "hash")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (found.id.as_str(), found.role, found.last_used_at),
            ("k1", Role::Admin, None)
        );
        api_keys::touch(db.pool(), "k1", Timestamp(20))
            .await
            .unwrap();
        assert_eq!(
            api_keys::list(db.pool()).await.unwrap()[0].last_used_at,
            Some(Timestamp(20))
        );
        assert!(api_keys::delete(db.pool(), "k1").await.unwrap());
        assert!(
            api_keys::find_by_hash(db.pool(), "hash")
                .await
                .unwrap()
                .is_none()
        );
        db.close().await;
    }
}

#[tokio::test]
async fn postgres_is_tested_in_ci() {
    let dbs = TestDb::all().await;
    if crate::harness::in_ci() {
        assert!(
            dbs.iter().any(|d| d.backend == Backend::Postgres),
            "CI must run the storage tests on PostgreSQL"
        );
    }
}
