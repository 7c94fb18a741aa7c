//! `Admin::migrate` against servers that require a password: the credentials reach `MIGRATE` (as
//! `AUTH` for the default user, `AUTH2` for a named one) without the caller ever passing them, a
//! key the target already holds is `BusyKey` and stays on both sides, and no message shows the password.

use std::time::Duration;

use cluster_client::{Admin, Bytes, Error, MigrateReply, Value};
use cluster_config::{ClusterConfig, Password};
use local_cluster::LocalStandalone;

const TIMEOUT: Duration = Duration::from_secs(2);

fn words(words: &[&str]) -> Vec<Value> {
    words.iter().map(|w| Value::from(*w)).collect()
}

async fn migrate_with(user: Option<&str>, secret: &str, setup: &[&[&str]]) {
    let servers = LocalStandalone::start(2).await.expect("servers start");
    let (source, target) = (servers.addrs()[0].clone(), servers.addrs()[1].clone());
    // Both servers get the credentials before any admin connection opens.
    for node in servers.nodes() {
        for command in setup {
            node.command::<(), _, _>(*command).await.expect("credentials set");
        }
    }
    let mut builder = ClusterConfig::builder()
        .nodes([source.as_str()])
        .password(Password::new(secret));
    if let Some(user) = user {
        builder = builder.username(user);
    }
    let admin = Admin::new(&builder.build().expect("valid config"));
    for key in ["a", "b", "c"] {
        let _: Value = admin
            .command(&source, words(&["SET", key, "from source"]), TIMEOUT)
            .await
            .expect("set on the source");
    }
    let _: Value = admin
        .command(&target, words(&["SET", "c", "newer on target"]), TIMEOUT)
        .await
        .expect("set on the target");

    let keys = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
    let reply = admin
        .migrate(&source, &target, &keys, TIMEOUT)
        .await
        .expect("migrate");
    assert_eq!(reply, MigrateReply::Moved);
    let moved: i64 = admin
        .command(&target, words(&["EXISTS", "a", "b"]), TIMEOUT)
        .await
        .expect("exists");
    assert_eq!(moved, 2, "both keys reached the target through MIGRATE's AUTH");
    let left: i64 = admin
        .command(&source, words(&["EXISTS", "a", "b"]), TIMEOUT)
        .await
        .expect("exists");
    assert_eq!(left, 0);

    // The target's copy is never replaced.
    let reply = admin
        .migrate(&source, &target, &[Bytes::from_static(b"c")], TIMEOUT)
        .await
        .expect("migrate");
    assert_eq!(reply, MigrateReply::BusyKey);
    let kept: String = admin
        .command(&target, words(&["GET", "c"]), TIMEOUT)
        .await
        .expect("get");
    assert_eq!(kept, "newer on target");
    let still: String = admin
        .command(&source, words(&["GET", "c"]), TIMEOUT)
        .await
        .expect("get");
    assert_eq!(still, "from source");

    // Nothing reached: already gone.
    let reply = admin
        .migrate(&source, &target, &[Bytes::from_static(b"a")], TIMEOUT)
        .await
        .expect("migrate");
    assert_eq!(reply, MigrateReply::NoKey);

    // A MIGRATE that fails on the target's side says so without the password.
    let unreachable = "127.0.0.1:1";
    let error = admin
        .migrate(&source, unreachable, &[Bytes::from_static(b"c")], TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Server { .. }), "{error}");
    for shown in [error.to_string(), format!("{error:?}"), format!("{admin:?}")] {
        assert!(!shown.contains(secret), "the password shows: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_authenticates_as_the_default_user() {
    let _lock = local_cluster::test_lock::shared().await.expect("lock");
    migrate_with(
        None,
        "default-s3cret",
        &[&["CONFIG", "SET", "requirepass", "default-s3cret"]],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_authenticates_as_a_named_user() {
    let _lock = local_cluster::test_lock::shared().await.expect("lock");
    migrate_with(
        Some("mover"),
        "mover-s3cret",
        // The default user needs another password, so only the named user's `AUTH2` lets MIGRATE in.
        &[
            &["ACL", "SETUSER", "mover", "on", ">mover-s3cret", "~*", "+@all"],
            &["CONFIG", "SET", "requirepass", "not-the-movers"],
        ],
    )
    .await;
}
