//! The command line: `config check`, `migrate`, and the extension rescue tools.

use crate::harness::run_cli;

fn write_config(dir: &std::path::Path, body: &str) {
    std::fs::write(dir.join("config.yml"), body).unwrap();
}

#[test]
fn config_check_reports_bad_values_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "http:\n  listen: 127.0.0.1:0\nrtp:\n  port_min: 20000\n  port_max: 10000\n",
    );
    let (ok, _, err) = run_cli(dir.path(), &["config", "check"], None);
    assert!(!ok);
    assert!(
        err.contains("rtp.port_max = 10000") && err.contains("at least rtp.port_min + 3"),
        "{err}"
    );

    // MFA settings that would only fail at a login are refused at the start.
    write_config(
        dir.path(),
        "security:
  mfa:
    issuer: \"Acme: PBX\"
    yubikey:
      api_key: not/base64!
    fido2:
      rp_id: other.example
      rp_origin: https://pbx.example
",
    );
    let (ok, _, err) = run_cli(dir.path(), &["config", "check"], None);
    assert!(!ok);
    assert!(
        err.contains("security.mfa.issuer")
            && err.contains("security.mfa.yubikey.api_key")
            && err.contains("security.mfa.fido2"),
        "{err}"
    );
    assert!(!err.contains("not/base64"), "the key is not echoed: {err}");

    write_config(
        dir.path(),
        "database:\n  url: postgres://pbx:hunter2@db.example/pbx\nfeatures:\n  hot_desking:\n    enabeld: true\nsip:\n  realm: ${SB_TEST_REALM:-pbx.example}\n",
    );
    std::fs::write(
        dir.path().join(".env"),
        "SB_TEST_REALM=from-dotenv.example\n",
    )
    .unwrap();
    let (ok, out, err) = run_cli(dir.path(), &["config", "check"], None);
    assert!(ok, "{err}");
    assert!(
        err.contains("features.hot_desking.enabeld")
            && err.contains("features.hot_desking.enabled"),
        "{err}"
    );
    assert!(
        out.contains("from-dotenv.example"),
        "the .env file beside the config is read: {out}"
    );
    assert!(
        !out.contains("hunter2") && out.contains("********"),
        "secrets are masked: {out}"
    );

    write_config(dir.path(), "sip:\n  realm: ${SB_TEST_UNSET_VARIABLE}\n");
    let (ok, _, err) = run_cli(dir.path(), &["config", "check"], None);
    assert!(!ok);
    assert!(err.contains("SB_TEST_UNSET_VARIABLE"), "{err}");

    let (ok, _, err) = run_cli(
        dir.path(),
        &["--config", "missing.yml", "config", "check"],
        None,
    );
    assert!(!ok && err.contains("missing.yml"), "{err}");
}

#[test]
fn extension_commands_work_without_the_panel() {
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        "data_dir: ./state\ndatabase:\n  url: sqlite://./state/pbx.db\n",
    );
    let (ok, out, err) = run_cli(dir.path(), &["migrate"], None);
    assert!(ok, "{err}");
    assert!(out.contains("up to date"));

    let (ok, out, err) = run_cli(
        dir.path(),
        &[
            "extension",
            "add",
            "2001",
            "--name",
            "Ada Lovelace",
            "--role",
            "admin",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("SIP secret:") && out.contains("password:"),
        "{out}"
    );
    let (ok, _, err) = run_cli(
        dir.path(),
        &["extension", "add", "2001", "--name", "Again"],
        None,
    );
    assert!(!ok && err.contains("already exists"), "{err}");

    let (ok, out, _) = run_cli(dir.path(), &["extension", "list"], None);
    assert!(
        ok && out.contains("2001") && out.contains("Ada Lovelace"),
        "{out}"
    );
    let (ok, out, _) = run_cli(dir.path(), &["extension", "list", "--json"], None);
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["number"], "2001");

    let (ok, out, err) = run_cli(dir.path(), &["extension", "set-password", "2001"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("temporary password") && out.contains("must be changed"),
        "{out}"
    );
    let (ok, _, err) = run_cli(
        dir.path(),
        &["extension", "set-password", "2001", "--password-stdin"],
        Some("short\n"),
    );
    assert!(!ok && err.contains("password"), "{err}");
    let (ok, _, err) = run_cli(
        dir.path(),
        &["extension", "set-password", "9999", "--password-stdin"],
        Some("long-enough-pass\n"),
    );
    assert!(!ok && err.contains("not found"), "{err}");
    let (ok, out, _) = run_cli(dir.path(), &["extension", "reset-pin", "2001"], None);
    assert!(ok && out.contains("new voicemail PIN"), "{out}");

    std::fs::write(
        dir.path().join("people.csv"),
        "number,name,email,voicemail_pin\n3001,Grace,grace@example.com,583920\n3002,,,\n",
    )
    .unwrap();
    let (ok, out, err) = run_cli(dir.path(), &["extension", "import", "people.csv"], None);
    assert!(ok, "{err}");
    assert!(out.contains("created 1, updated 0, skipped 1"), "{out}");
    assert!(out.contains("row 2 (3002)"), "{out}");
}

#[test]
fn json_logs_for_machines() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), "http:\n  lisen: 0.0.0.0:1\n");
    let (ok, _, err) = run_cli(
        dir.path(),
        &["--log-format", "json", "config", "check"],
        None,
    );
    assert!(ok);
    let line = err
        .lines()
        .find(|l| l.contains("http.lisen"))
        .expect("the unknown key is logged");
    let record: serde_json::Value = serde_json::from_str(line).expect("each log line is JSON");
    assert_eq!(record["level"], "WARN");
    assert!(
        record["message"]
            .as_str()
            .unwrap()
            .contains("did you mean `http.listen`"),
        "{record}"
    );
}
