//! `config.example.yml` documents every key and loads as the defaults.

use std::collections::HashMap;

use switchboard::config::{Config, known_keys, load_str};

use crate::harness::repo_root;

#[test]
fn the_example_is_complete_and_loads_as_the_defaults() {
    let text = std::fs::read_to_string(repo_root().join("config.example.yml"))
        .expect("config.example.yml exists");
    let loaded = load_str(&text, "config.example.yml", HashMap::new())
        .expect("the example loads without variables");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        serde_json::to_value(&loaded.config).unwrap(),
        serde_json::to_value(Config::default()).unwrap(),
        "the example's values are the defaults"
    );
    let missing: Vec<String> = known_keys()
        .into_iter()
        .filter(|path| {
            let leaf = path.rsplit('.').next().unwrap();
            !text.lines().any(|l| {
                l.trim_start()
                    .trim_start_matches('#')
                    .trim_start()
                    .trim_start_matches("- ")
                    .starts_with(&format!("{leaf}:"))
            })
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys not documented in config.example.yml: {missing:?}"
    );
}
