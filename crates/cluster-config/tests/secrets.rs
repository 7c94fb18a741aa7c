//! A canary password must not appear in any Debug, Display, serialization or error output.

use std::path::Path;

use cluster_config::{ClusterConfig, Error, Password, SecretExport};

const CANARY: &str = "canary-pw-7f3a9c";

fn assert_hidden(what: &str, text: &str) {
    assert!(!text.contains(CANARY), "{what} leaks the password: {text}");
}

fn assert_error_hidden(what: &str, result: Result<ClusterConfig, Error>) {
    match result {
        Ok(config) => panic!("{what}: expected an error, got {config:?}"),
        Err(error) => {
            assert_hidden(what, &error.to_string());
            assert_hidden(what, &format!("{error:?}"));
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|error| panic!("{error}"));
    path
}

#[test]
fn a_valid_config_never_shows_its_password() {
    let config = ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", "h:1"), ("REDIS_PASSWORD", CANARY)])
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.password().map(Password::expose), Some(CANARY));
    assert_hidden("Debug", &format!("{config:?}"));
    assert_hidden("pretty Debug", &format!("{config:#?}"));
    assert_hidden(
        "password Display",
        &config.password().map(ToString::to_string).unwrap_or_default(),
    );
    assert_hidden(
        "serde",
        &serde_json::to_string(&config).unwrap_or_else(|error| panic!("{error}")),
    );
    assert_hidden("redacted TOML", &config.to_toml(SecretExport::Redact));
    assert_hidden(
        "redacted env",
        &format!("{:?}", config.to_env_vars(SecretExport::Redact)),
    );
    let json = serde_json::to_value(&config).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(json["auth"]["password"], "[redacted]");
    assert_eq!(json["retry"]["max_retries"], 5);
    assert!(config.to_toml(SecretExport::Reveal).contains(CANARY));
}

#[test]
fn errors_never_show_the_password() {
    assert_error_hidden(
        "other problems",
        ClusterConfig::from_env_vars([("REDIS_PASSWORD", CANARY), ("REDIS_CONNECTION_POOL_SIZE", "0")]),
    );
    assert_error_hidden(
        "credentials in a node URL",
        ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", format!("redis://user:{CANARY}@h:1"))]),
    );
    assert_error_hidden(
        "credentials without a scheme",
        ClusterConfig::from_env_vars([("REDIS_CLUSTER_NODES", format!("{CANARY}@h:1"))]),
    );
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let list = write(
        dir.path(),
        "list.toml",
        &format!("[auth]\npassword = [\"{CANARY}\"]\n"),
    );
    assert_error_hidden(
        "a password given as a list",
        ClusterConfig::builder().nodes(["h:1"]).file(list).build(),
    );
}

#[test]
fn file_syntax_errors_never_quote_the_password() {
    let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
    let cases = [
        (
            "unterminated.toml",
            format!("nodes = [\"h:1\"]\n[auth]\npassword = \"{CANARY}\n"),
        ),
        (
            "bare.toml",
            format!("nodes = [\"h:1\"]\n[auth]\npassword = {CANARY}\n"),
        ),
        (
            "misplaced.toml",
            format!("nodes = [\"h:1\"]\n{CANARY} {CANARY}\n"),
        ),
        (
            "typo.toml",
            format!("nodes = [\"h:1\"]\n[auth]\npasword = \"{CANARY}\"\n"),
        ),
        (
            "unterminated.yaml",
            format!("nodes: [h:1]\nauth:\n  password: \"{CANARY}\n"),
        ),
        (
            "tabbed.yaml",
            format!("nodes: [h:1]\nauth:\n\tpassword: {CANARY}\n"),
        ),
        ("mapping.yaml", format!("auth:\n  password: {CANARY}\n - x\n")),
    ];
    for (name, text) in cases {
        let path = write(dir.path(), name, &text);
        assert_error_hidden(name, ClusterConfig::from_file(path));
    }
}
