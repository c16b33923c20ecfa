//! Reading `config.yml`: `.env`, `${VAR}` interpolation, unknown-key warnings, and
//! errors naming the key, the value and what is allowed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use super::schema::{Config, WebhookSubscriptionConfig};
use super::validate::validate;

/// A loaded configuration with what the operator should hear about.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// The file it came from; `None` when built-in defaults are in use.
    pub source: Option<PathBuf>,
    /// Unknown keys, each with the nearest known key when there is one.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Dotenv { path: PathBuf, message: String },
    #[error("{origin}: {key}: {message}")]
    Parse {
        origin: String,
        key: String,
        message: String,
    },
    #[error("{}", format_invalid(.0))]
    Invalid(Vec<Invalid>),
}

/// One rejected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub key: String,
    pub value: String,
    pub allowed: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.allowed)
    }
}

fn format_invalid(list: &[Invalid]) -> String {
    let lines: Vec<String> = list.iter().map(|i| format!("  {i}")).collect();
    format!("invalid configuration:\n{}", lines.join("\n"))
}

/// Loads the configuration: `explicit` (from `--config`), else `./config.yml` when it
/// exists, else the built-in defaults. A `.env` beside the file (or in the working
/// directory) is read first; the process environment wins over it.
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let path = match explicit {
        Some(p) => Some(p.to_path_buf()),
        None => Some(PathBuf::from("config.yml")).filter(|p| p.exists()),
    };
    let dotenv_dir = path
        .as_deref()
        .and_then(Path::parent)
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let mut properties = read_dotenv(&dotenv_dir.join(".env"))?;
    properties.extend(std::env::vars());

    let Some(path) = path else {
        let config = Config::default();
        validate(&config).map_err(ConfigError::Invalid)?;
        return Ok(Loaded {
            config,
            source: None,
            warnings: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let mut loaded = load_str(&text, &path.display().to_string(), properties)?;
    loaded.source = Some(path);
    Ok(loaded)
}

fn read_dotenv(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let iter = dotenvy::from_path_iter(path).map_err(|e| ConfigError::Dotenv {
        path: path.into(),
        message: e.to_string(),
    })?;
    iter.map(|item| {
        item.map_err(|e| ConfigError::Dotenv {
            path: path.into(),
            message: e.to_string(),
        })
    })
    .collect()
}

/// Parses YAML text (`origin` names it in errors) with `properties` for `${VAR}`.
pub fn load_str(
    text: &str,
    origin: &str,
    properties: HashMap<String, String>,
) -> Result<Loaded, ConfigError> {
    let config = if is_blank_yaml(text) {
        Config::default()
    } else {
        let mut ignored = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let options = serde_saphyr::options! {}.with_properties(properties);
        let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
            let de = serde_path_to_error::Deserializer::new(de, &mut track);
            serde_ignored::deserialize(de, |path| ignored.push(path.to_string()))
        });
        match parsed {
            Ok(config) => {
                let warnings = unknown_key_warnings(&ignored);
                validate(&config).map_err(ConfigError::Invalid)?;
                return Ok(Loaded {
                    config,
                    source: None,
                    warnings,
                });
            }
            Err(err) => {
                let key = track.path().to_string();
                return Err(ConfigError::Parse {
                    origin: origin.into(),
                    key: if key == "." {
                        "(top level)".into()
                    } else {
                        key
                    },
                    message: err.to_string(),
                });
            }
        }
    };
    validate(&config).map_err(ConfigError::Invalid)?;
    Ok(Loaded {
        config,
        source: None,
        warnings: Vec::new(),
    })
}

/// An empty file, or one with only comments, is the defaults.
fn is_blank_yaml(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---")
}

fn unknown_key_warnings(ignored: &[String]) -> Vec<String> {
    let known = known_keys();
    ignored
        .iter()
        .map(|key| match nearest(key, &known) {
            Some(near) => {
                format!("unknown configuration key `{key}` (ignored); did you mean `{near}`?")
            }
            None => format!("unknown configuration key `{key}` (ignored)"),
        })
        .collect()
}

/// Every key path the schema accepts, with list items written as `*`.
pub fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let defaults = serde_json::to_value(Config::default()).expect("config serialises");
    collect_paths("", &defaults, &mut keys);
    let item = serde_json::to_value(WebhookSubscriptionConfig::default()).expect("serialises");
    collect_paths("features.webhooks.subscriptions.*", &item, &mut keys);
    for extra in ["http.tls.cert_file", "http.tls.key_file"] {
        keys.insert(extra.into());
    }
    keys
}

fn collect_paths(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            out.insert(path.clone());
            collect_paths(&path, v, out);
        }
    }
}

/// The known key closest to `key` (list indices compared as `*`), when close enough to
/// be a likely typo or misplacement.
fn nearest(key: &str, known: &BTreeSet<String>) -> Option<String> {
    let normalised: Vec<&str> = key
        .split('.')
        .map(|seg| {
            if seg.chars().all(|c| c.is_ascii_digit()) {
                "*"
            } else {
                seg
            }
        })
        .collect();
    let normalised = normalised.join(".");
    let leaf = normalised.rsplit('.').next().unwrap_or(&normalised);
    known
        .iter()
        .map(|candidate| {
            let cand_leaf = candidate.rsplit('.').next().unwrap_or(candidate);
            let whole = strsim::normalized_damerau_levenshtein(&normalised, candidate);
            let leaf_score = strsim::normalized_damerau_levenshtein(leaf, cand_leaf);
            (whole.max(leaf_score * 0.9), candidate)
        })
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let loaded = load_str("# nothing\n", "t", props(&[])).unwrap();
        assert_eq!(loaded.config.http.listen.0.port(), 8080);
        assert_eq!(loaded.config.sip.realm, "switchboard");
        assert_eq!(loaded.config.rtp.port_min, 10000);
        assert_eq!(
            loaded.config.features.hot_desking.auto_logout_timeout,
            28800
        );
        assert!(!loaded.config.features.hot_desking.enabled);
        assert!(loaded.warnings.is_empty());
    }

    #[test]
    fn seed_keys_are_accepted_at_their_paths() {
        let yaml = r#"
features:
  hot_desking:
    enabled: true
    require_pin: true
    allow_concurrent_logins: false
    auto_logout_timeout: 28800
  webhooks:
    enabled: true
    subscriptions:
      - url: "https://your-system.com/webhooks/hotdesk"
        events: ["hot_desk.login", "hot_desk.logout"]
        enabled: true
  webrtc:
    enabled: true
  dnd_scheduling:
    enabled: true
    calendar_dnd: true
    check_interval: 60
  skills_routing:
    enabled: true
    fallback_to_any: true
    proficiency_weight: 0.7
integrations:
  active_directory:
    enabled: true
    auto_provision: true
    server: ldap://your-ad-server.com
    base_dn: DC=company,DC=com
    bind_dn: CN=pbxuser,OU=Service Accounts,DC=company,DC=com
    bind_password: ${AD_BIND_PASSWORD}
    user_search_base: OU=Users,DC=company,DC=com
    use_ssl: true
    deactivate_removed_users: true
security:
  fips_mode: true
  enforce_fips: true
  mfa:
    enabled: true
    required: false
    backup_codes: 10
    yubikey:
      enabled: true
      client_id: "YOUR_CLIENT_ID"
      api_key: "WU9VUl9BUElfS0VZ"
    fido2:
      enabled: true
  threat_detection:
    enabled: true
    ip_block_duration: 3600
    failed_login_threshold: 10
    suspicious_pattern_threshold: 5
"#;
        let loaded = load_str(yaml, "t", props(&[("AD_BIND_PASSWORD", "s3cret")])).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert!(c.features.hot_desking.enabled);
        assert_eq!(c.features.webhooks.subscriptions[0].events.len(), 2);
        assert_eq!(
            c.integrations
                .active_directory
                .bind_password
                .as_ref()
                .unwrap()
                .expose(),
            "s3cret"
        );
        assert_eq!(
            c.security.mfa.yubikey.client_id.as_deref(),
            Some("YOUR_CLIENT_ID")
        );
        assert!((c.features.skills_routing.proficiency_weight - 0.7).abs() < 1e-9);
    }

    #[test]
    fn variables_with_defaults_and_missing_variables() {
        let yaml = "http:\n  listen: ${LISTEN:-127.0.0.1:9090}\nsip:\n  realm: ${REALM}\n";
        let loaded = load_str(yaml, "t", props(&[("REALM", "pbx.example")])).unwrap();
        assert_eq!(loaded.config.http.listen.0.to_string(), "127.0.0.1:9090");
        assert_eq!(loaded.config.sip.realm, "pbx.example");

        let err = load_str(yaml, "t", props(&[])).unwrap_err().to_string();
        assert!(err.contains("REALM"), "{err}");
    }

    #[test]
    fn unknown_keys_warn_with_the_nearest_known_key() {
        let yaml = "features:\n  hot_desking:\n    enabeld: true\nhttp:\n  lisen: 0.0.0.0:1\n";
        let loaded = load_str(yaml, "t", props(&[])).unwrap();
        assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
        assert!(loaded.warnings[0].contains("features.hot_desking.enabeld"));
        assert!(loaded.warnings[0].contains("did you mean `features.hot_desking.enabled`"));
        assert!(
            loaded.warnings[1].contains("`http.listen`"),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn wrong_types_name_key_and_value() {
        let err = load_str("http:\n  listen: nowhere\n", "t", props(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.listen"), "{err}");
        assert!(err.contains("nowhere"), "{err}");
        assert!(err.contains("IP:PORT"), "{err}");

        let yaml = "features:\n  hot_desking:\n    exclusive_policy: maybe\n";
        let err = load_str(yaml, "t", props(&[])).unwrap_err().to_string();
        assert!(
            err.contains("features.hot_desking.exclusive_policy"),
            "{err}"
        );
        assert!(
            err.contains("maybe") && err.contains("moved") && err.contains("reject"),
            "{err}"
        );

        let err = load_str("rtp:\n  port_min: lots\n", "t", props(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rtp.port_min") && err.contains("lots"),
            "{err}"
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let yaml = "rtp:\n  port_min: 20000\n  port_max: 10000\nsecurity:\n  min_pin_length: 2\n";
        let err = load_str(yaml, "t", props(&[])).unwrap_err().to_string();
        assert!(err.contains("rtp.port_max = 10000"), "{err}");
        assert!(err.contains("security.min_pin_length = 2"), "{err}");
        assert!(err.contains("4 to 12"), "{err}");
    }

    #[test]
    fn ice_servers_must_be_stun_or_turn_urls() {
        let ok = "features:\n  webrtc:\n    ice_servers: [\"stun:stun.example.com:3478\", \"turn:[2001:db8::1]:3478?transport=tcp\", \"stuns:stun.example.com\"]\n";
        let loaded = load_str(ok, "t", props(&[])).unwrap();
        assert_eq!(loaded.config.features.webrtc.ice_servers.len(), 3);
        for bad in [
            "http://stun.example.com",
            "stun:",
            "stun://host",
            "turn:user@host",
            "stun:a b",
        ] {
            let yaml = format!(
                "features:\n  webrtc:\n    ice_servers: [\"stun:ok.example.com\", \"{bad}\"]\n"
            );
            let err = load_str(&yaml, "t", props(&[])).unwrap_err().to_string();
            assert!(
                err.contains("features.webrtc.ice_servers[1]"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let yaml = "database:\n  url: postgres://pbx:hunter2@db/pbx\n";
        let loaded = load_str(yaml, "t", props(&[])).unwrap();
        let printed = serde_json::to_string(&loaded.config).unwrap();
        assert!(!printed.contains("hunter2"));
        assert!(printed.contains("postgres://pbx:********@db/pbx"));
        assert_eq!(
            loaded.config.database.url.expose(),
            "postgres://pbx:hunter2@db/pbx"
        );
    }

    #[test]
    fn http_tls_forms() {
        use crate::config::HttpTls;
        let l = load_str("http:\n  tls: self_signed\n", "t", props(&[])).unwrap();
        assert!(matches!(l.config.http.tls, HttpTls::SelfSigned));
        let l = load_str(
            "http:\n  tls:\n    cert_file: a.pem\n    key_file: b.pem\n",
            "t",
            props(&[]),
        )
        .unwrap();
        assert!(matches!(l.config.http.tls, HttpTls::Files { .. }));
        let err = load_str("http:\n  tls: yes-please\n", "t", props(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("http.tls") && err.contains("self_signed"),
            "{err}"
        );
    }
}
