//! The admin panel in headless Chromium (Playwright, `tests/browser/`): log in with the
//! banner password, change it, create an extension and see it listed; then a user made
//! to enrol a second factor (`security.mfa.required_for: [user]`) sets up an
//! authenticator app and a security key and logs in with each and with a backup code.

use crate::harness::{Process, repo_root, skip_or_fail};

#[test]
fn panel_in_chromium() {
    let browser_dir = repo_root().join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        return skip_or_fail("tests/browser/node_modules is missing (run npm ci in tests/browser)");
    }
    if !std::path::Path::new(&chromium).exists() {
        return skip_or_fail(&format!("no Chromium at {chromium}"));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yml"),
        "http:\n  listen: 127.0.0.1:0\nsip:\n  listen: [\"udp:127.0.0.1:0\"]\nfeatures:\n  hot_desking:\n    enabled: true\n  webhooks:\n    allow_private_targets: true\n    retry_delays: [1]\nsecurity:\n  mfa:\n    required_for: [user]\n",
    )
    .unwrap();
    let mut pbx = Process::spawn(dir.path(), &["--config", "config.yml"]);
    let running = pbx.wait_for_line("Switchboard is running");
    let addr = running
        .rsplit("HTTP on ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .trim()
        .to_owned();
    let password = pbx.value_after("Password:  ").expect("banner password");
    let pin = pbx.value_after("Voicemail PIN: ").expect("banner PIN");
    let status = std::process::Command::new("node")
        .args(["--test", "panel.test.mjs"])
        .current_dir(&browser_dir)
        .env("SWITCHBOARD_URL", format!("http://{addr}"))
        .env("SWITCHBOARD_PASSWORD", password)
        .env("SWITCHBOARD_PIN", pin)
        .env("CHROMIUM", &chromium)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the Playwright panel test failed (screenshots in tests/browser/test-results)"
    );
    assert!(pbx.terminate().success());
}
