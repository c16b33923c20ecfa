//! Range and consistency checks that types alone cannot express. Every problem is
//! collected so the operator fixes them in one go.

use base64::Engine;

use super::load::Invalid;
use super::schema::Config;
use super::types::SipTransport;

pub(super) fn validate(c: &Config) -> Result<(), Vec<Invalid>> {
    let mut errs = Vec::new();
    let mut bad = |key: &str, value: &dyn std::fmt::Display, allowed: &str| {
        errs.push(Invalid {
            key: key.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        });
    };

    if c.data_dir.as_os_str().is_empty() {
        bad("data_dir", &"\"\"", "a directory path");
    }
    if c.timezone.parse::<chrono_tz::Tz>().is_err() {
        bad(
            "timezone",
            &c.timezone,
            "an IANA time zone such as UTC or Europe/Paris",
        );
    }
    if tracing_subscriber::EnvFilter::try_new(&c.logging.level).is_err() {
        bad(
            "logging.level",
            &c.logging.level,
            "a tracing filter such as info or switchboard=debug",
        );
    }

    let url = c.database.url.expose();
    if !(url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://"))
    {
        bad(
            "database.url",
            &c.database.url.masked(),
            "sqlite://PATH or postgres://USER@HOST/DB",
        );
    }
    if c.database.max_connections == 0 {
        bad("database.max_connections", &0, "1 or more");
    }

    if c.http.session_idle_timeout < 60 {
        bad(
            "http.session_idle_timeout",
            &c.http.session_idle_timeout,
            "60 seconds or more",
        );
    }
    if c.http.session_absolute_timeout < c.http.session_idle_timeout {
        bad(
            "http.session_absolute_timeout",
            &c.http.session_absolute_timeout,
            "at least http.session_idle_timeout",
        );
    }
    if let Some(public) = &c.http.public_url
        && !(public.starts_with("http://") || public.starts_with("https://"))
    {
        bad("http.public_url", public, "an http:// or https:// URL");
    }
    if c.http.body_limit < 1024 {
        bad("http.body_limit", &c.http.body_limit, "1024 bytes or more");
    }

    if c.sip.listen.is_empty() {
        bad(
            "sip.listen",
            &"[]",
            "at least one listener such as udp:0.0.0.0:5060",
        );
    }
    if c.sip
        .listen
        .iter()
        .any(|l| l.transport == SipTransport::Tls)
        && !c.sip.tls.is_configured()
    {
        bad(
            "sip.listen",
            &"tls:…",
            "a tls listener needs sip.tls.cert_file and sip.tls.key_file",
        );
    }
    let realm_ok = !c.sip.realm.is_empty()
        && c.sip
            .realm
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch));
    if !realm_ok {
        bad(
            "sip.realm",
            &c.sip.realm,
            "a host name: letters, digits, '-', '.', '_'",
        );
    }
    if !(1..=86400).contains(&c.sip.min_expires) {
        bad("sip.min_expires", &c.sip.min_expires, "1 to 86400 seconds");
    }
    if c.sip.max_expires < c.sip.min_expires {
        bad(
            "sip.max_expires",
            &c.sip.max_expires,
            "at least sip.min_expires",
        );
    }
    let algs = &c.sip.digest_algorithms;
    if algs.is_empty() || algs.iter().enumerate().any(|(i, a)| algs[..i].contains(a)) {
        bad(
            "sip.digest_algorithms",
            &format!("{algs:?}"),
            "MD5 and/or SHA-256, each once, in order of preference",
        );
    }
    if c.security.fips_mode && !algs.contains(&super::schema::DigestAlgorithm::Sha256) {
        bad(
            "sip.digest_algorithms",
            &format!("{algs:?}"),
            "SHA-256 among them: security.fips_mode never offers MD5",
        );
    }
    if c.sip.max_connections == 0 {
        bad("sip.max_connections", &0, "1 or more");
    }
    if c.sip.idle_timeout < 30 {
        bad(
            "sip.idle_timeout",
            &c.sip.idle_timeout,
            "30 seconds or more",
        );
    }
    if c.sip.nonce_lifetime == 0 {
        bad("sip.nonce_lifetime", &0, "1 second or more");
    }
    let t = &c.sip.timers;
    if t.t1_ms == 0 || t.t2_ms < t.t1_ms || t.t4_ms == 0 {
        bad(
            "sip.timers",
            &format!("t1={} t2={} t4={}", t.t1_ms, t.t2_ms, t.t4_ms),
            "t1 > 0, t2 ≥ t1, t4 > 0",
        );
    }

    if c.rtp.port_min < 1024 {
        bad("rtp.port_min", &c.rtp.port_min, "1024 to 65534");
    }
    if c.rtp.port_max <= c.rtp.port_min || c.rtp.port_max - c.rtp.port_min < 3 {
        bad(
            "rtp.port_max",
            &c.rtp.port_max,
            "at least rtp.port_min + 3 (room for two RTP/RTCP pairs)",
        );
    }

    if let Some(addr) = &c.rtp.public_address
        && addr.parse::<std::net::IpAddr>().is_err()
    {
        bad(
            "rtp.public_address",
            addr,
            "an IP address (the one phones reach the PBX at), or null",
        );
    }

    if !(5..=600).contains(&c.calls.ring_timeout) {
        bad(
            "calls.ring_timeout",
            &c.calls.ring_timeout,
            "5 to 600 seconds",
        );
    }
    if c.calls.media_timeout < 5 {
        bad(
            "calls.media_timeout",
            &c.calls.media_timeout,
            "5 seconds or more",
        );
    }
    for (i, n) in c.calls.emergency_numbers.iter().enumerate() {
        if n.is_empty() || !n.chars().all(|ch| ch.is_ascii_digit() || ch == '+') {
            bad(
                &format!("calls.emergency_numbers[{i}]"),
                n,
                "digits, optionally starting with +",
            );
        }
    }

    let vm = &c.voicemail;
    if !(1..=3600).contains(&vm.max_message_seconds) {
        bad(
            "voicemail.max_message_seconds",
            &vm.max_message_seconds,
            "1 to 3600 seconds",
        );
    }
    if vm.min_message_seconds >= vm.max_message_seconds {
        bad(
            "voicemail.min_message_seconds",
            &vm.min_message_seconds,
            "less than max_message_seconds",
        );
    }

    for p in c.auto_attendant.problems() {
        bad(&format!("auto_attendant.{}", p.field), &p.value, &p.message);
    }

    // Checked even without smtp.host, so a sender typed wrong shows before mail is on.
    if crate::features::mail::parse_from(&c.smtp.from).is_err() {
        bad(
            "smtp.from",
            &c.smtp.from,
            "an e-mail address, optionally with a name: Switchboard <pbx@example.com>",
        );
    }
    if c.smtp.host.is_some() && c.smtp.port == 0 {
        bad("smtp.port", &0, "1 to 65535");
    }

    if !(4..=12).contains(&c.security.min_pin_length) {
        bad(
            "security.min_pin_length",
            &c.security.min_pin_length,
            "4 to 12 digits",
        );
    }
    if !(1..=100).contains(&c.security.mfa.backup_codes) {
        bad(
            "security.mfa.backup_codes",
            &c.security.mfa.backup_codes,
            "1 to 100",
        );
    }
    let issuer = &c.security.mfa.issuer;
    if issuer.trim().is_empty() || issuer.contains(':') {
        // The otpauth:// label is issuer:account; a colon would split it wrongly.
        bad("security.mfa.issuer", issuer, "a name without ':'");
    }
    if let Some(key) = &c.security.mfa.yubikey.api_key
        && !key.expose().is_empty()
        && base64::engine::general_purpose::STANDARD
            .decode(key.expose())
            .is_err()
    {
        // Found now rather than as every YubiKey login failing.
        bad(
            "security.mfa.yubikey.api_key",
            &"********",
            "the base64 API key Yubico issued",
        );
    }
    let fido2 = &c.security.mfa.fido2;
    if fido2.enabled
        && (fido2.rp_id.is_some() || fido2.rp_origin.is_some())
        && let Err(why) = crate::features::mfa::webauthn::relying_party(c)
    {
        // Set on purpose and wrong: stop now. (A default that cannot work, a panel
        // reached by IP address, only leaves security keys off, with a warning.)
        bad(
            "security.mfa.fido2",
            &why,
            "rp_id the host of rp_origin or a parent domain of it",
        );
    }
    let td = &c.security.threat_detection;
    if td.failed_login_threshold == 0 {
        bad(
            "security.threat_detection.failed_login_threshold",
            &0,
            "1 or more",
        );
    }
    if td.suspicious_pattern_threshold == 0 {
        bad(
            "security.threat_detection.suspicious_pattern_threshold",
            &0,
            "1 or more",
        );
    }
    for (i, net) in td.trusted_networks.iter().enumerate() {
        if !is_cidr(net) {
            bad(
                &format!("security.threat_detection.trusted_networks[{i}]"),
                net,
                "an IP address or CIDR such as 10.0.0.0/8 or 2001:db8::/32",
            );
        }
    }

    let hd = &c.features.hot_desking;
    if hd.cleanup_interval == 0 {
        bad(
            "features.hot_desking.cleanup_interval",
            &0,
            "1 second or more",
        );
    }
    if hd.max_pin_failures == 0 {
        bad("features.hot_desking.max_pin_failures", &0, "1 or more");
    }

    let wh = &c.features.webhooks;
    for (i, sub) in wh.subscriptions.iter().enumerate() {
        if let Some(why) =
            crate::features::webhooks::config_url_problem(sub, wh.allow_private_targets)
        {
            bad(
                &format!("features.webhooks.subscriptions[{i}].url"),
                &sub.url,
                &format!("an http:// or https:// URL ({why})"),
            );
        } else if wh.subscriptions[..i].iter().any(|o| o.url == sub.url) {
            bad(
                &format!("features.webhooks.subscriptions[{i}].url"),
                &sub.url,
                "a URL no other subscription of the file has",
            );
        }
        if sub.events.is_empty() {
            bad(
                &format!("features.webhooks.subscriptions[{i}].events"),
                &"[]",
                "event names or wildcards such as call.* or *",
            );
        }
        if let Some(secret) = &sub.secret
            && crate::features::webhooks::signing::key_of(secret.expose()).is_none()
        {
            bad(
                &format!("features.webhooks.subscriptions[{i}].secret"),
                &"********",
                "whsec_<base64>",
            );
        }
    }
    if wh.timeout == 0 || wh.timeout > 300 {
        bad("features.webhooks.timeout", &wh.timeout, "1 to 300 seconds");
    }
    if wh.max_concurrency == 0 {
        bad("features.webhooks.max_concurrency", &0, "1 or more");
    }
    if wh.retry_delays.is_empty() || wh.retry_delays.iter().any(|d| *d == 0 || *d > 86_400) {
        bad(
            "features.webhooks.retry_delays",
            &format!("{:?}", wh.retry_delays),
            "a list of 1 to 86400 seconds, e.g. [5, 30, 120, 600, 1800, 3600]",
        );
    }

    for (i, url) in c.features.webrtc.ice_servers.iter().enumerate() {
        if !is_ice_url(url) {
            bad(
                &format!("features.webrtc.ice_servers[{i}]"),
                url,
                "a STUN or TURN URL: stun:HOST[:PORT], stuns:…, turn:HOST[:PORT][?transport=udp|tcp], turns:…",
            );
        }
    }

    if c.features.dnd_scheduling.check_interval == 0 {
        bad(
            "features.dnd_scheduling.check_interval",
            &0,
            "1 second or more",
        );
    }
    let w = c.features.skills_routing.proficiency_weight;
    if !(0.0..=1.0).contains(&w) {
        bad(
            "features.skills_routing.proficiency_weight",
            &w,
            "0.0 to 1.0",
        );
    }

    let ad = &c.integrations.active_directory;
    if ad.enabled {
        if !(ad.server.starts_with("ldap://") || ad.server.starts_with("ldaps://")) {
            bad(
                "integrations.active_directory.server",
                &ad.server,
                "ldap://HOST or ldaps://HOST",
            );
        }
        if ad.base_dn.is_empty() {
            bad(
                "integrations.active_directory.base_dn",
                &"\"\"",
                "a DN such as DC=company,DC=com",
            );
        }
    }
    if ad.page_size == 0 {
        bad("integrations.active_directory.page_size", &0, "1 or more");
    }

    if c.devices.heartbeat_interval == 0 {
        bad(
            "devices.heartbeat_interval",
            &c.devices.heartbeat_interval,
            "1 second or more",
        );
    }

    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// A STUN or TURN URL as browsers take it (RFC 7064, RFC 7065): the scheme and a host,
/// no spaces or credentials.
fn is_ice_url(url: &str) -> bool {
    let rest = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme));
    rest.is_some_and(|r| {
        let host = r.split(['?', ':']).next().unwrap_or("");
        let host = if r.starts_with('[') {
            r.split(']').next().unwrap_or("")
        } else {
            host
        };
        !host.is_empty()
            && !r.starts_with("//")
            && !r.contains('@')
            && r.chars().all(|c| c.is_ascii_graphic())
    })
}

fn is_cidr(text: &str) -> bool {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max))
}
