//! `from_env` and `load` read the real process environment. Setting variables in this process would
//! need `unsafe` (edition 2024), so each test re-runs itself as a child process with the variables set.

use std::ffi::OsString;
use std::process::Command;

use cluster_config::ClusterConfig;

/// Set in the child, naming the scenario it should check.
const CHILD: &str = "CLUSTER_CONFIG_TEST_CHILD";

/// Runs this test binary's `test` as a child with `vars` as its only `REDIS_*` variables.
fn run_child(test: &str, vars: &[(&str, OsString)]) {
    let exe = std::env::current_exe().unwrap_or_else(|error| panic!("current test binary: {error}"));
    let mut command = Command::new(exe);
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, test);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REDIS_") {
            command.env_remove(name);
        }
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("running the child for {test}: {error}"));
    assert!(
        output.status.success(),
        "child for {test} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child for {test} ran no test:\n{stdout}"
    );
}

fn in_child(test: &str) -> bool {
    std::env::var_os(CHILD).is_some_and(|value| value == test)
}

#[test]
fn from_env_reads_the_process_environment() {
    const TEST: &str = "from_env_reads_the_process_environment";
    if !in_child(TEST) {
        let dir = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "pool_size = 3\n[retry]\nmax_retries = 1\n").unwrap_or_else(|e| panic!("{e}"));
        return run_child(
            TEST,
            &[
                ("REDIS_CLUSTER_NODES", "child-node:7000".into()),
                ("REDIS_MAX_RETRIES", "9".into()),
                ("REDIS_CONFIG_FILE", file.into_os_string()),
            ],
        );
    }
    let config = ClusterConfig::from_env().unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(config.nodes()[0].to_string(), "child-node:7000");
    assert_eq!(config.retry().max_retries, 9, "the environment outranks the file");
    assert_eq!(
        config.pool_size(),
        3,
        "the file named by REDIS_CONFIG_FILE is read"
    );
    let loaded =
        ClusterConfig::load(ClusterConfig::builder().max_retries(4)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((loaded.retry().max_retries, loaded.pool_size()), (4, 3));
    // `build` alone reads no environment.
    let error = ClusterConfig::builder()
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(error.contains("no nodes are listed"), "{error}");
}

#[cfg(unix)]
#[test]
fn non_utf8_variables_are_problems_not_panics() {
    use std::os::unix::ffi::OsStringExt;
    const TEST: &str = "non_utf8_variables_are_problems_not_panics";
    if !in_child(TEST) {
        return run_child(
            TEST,
            &[
                ("REDIS_CLUSTER_NODES", "h:1".into()),
                ("REDIS_PASSWORD", OsString::from_vec(vec![b'p', 0xff, b'w'])),
            ],
        );
    }
    let error = ClusterConfig::from_env().err();
    let problems = error.as_ref().map(|e| e.problems()).unwrap_or_default();
    assert_eq!(problems.len(), 1, "{error:?}");
    assert_eq!(problems[0].env_var(), Some("REDIS_PASSWORD"));
    assert!(problems[0].message().contains("not valid UTF-8"));
}
