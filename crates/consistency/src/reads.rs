//! Reading what nodes hold: version headers, whole values, TTLs and replication offsets.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::{ClusterClient, Value};

use crate::envelope::HEADER_LEN;
use crate::state::Observed;

/// How often a replica's offset is polled while waiting for it to catch up.
const CATCH_UP_POLL: Duration = Duration::from_millis(5);

fn is_wrong_type(error: &cluster_client::Error) -> bool {
    matches!(error, cluster_client::Error::Server { message, .. } if message.starts_with("WRONGTYPE"))
}

/// What `node` holds for `key`, reading only the header (`GETRANGE 0 23`), so that an audit moves 24
/// bytes per key whatever the values' size.
pub(crate) async fn read_copy(
    client: &ClusterClient,
    node: &str,
    key: &Bytes,
) -> Result<Observed, cluster_client::Error> {
    let args = vec![
        "GETRANGE".into(),
        Value::Bytes(key.clone()),
        Value::Integer(0),
        Value::Integer(HEADER_LEN as i64 - 1),
    ];
    let prefix = match client.node_command::<Value>(node, args).await {
        Ok(value) => value,
        // Hashes, lists and other types hold no envelope.
        Err(error) if is_wrong_type(&error) => return Ok(Observed::Unversioned),
        Err(error) => return Err(error),
    };
    let bytes = prefix.as_bytes().unwrap_or_default();
    if !bytes.is_empty() {
        return Ok(Observed::from_stored(Some(bytes)));
    }
    // GETRANGE answers "" both for a missing key and for an empty plain value.
    let exists: i64 = client
        .node_command(node, vec!["EXISTS".into(), Value::Bytes(key.clone())])
        .await?;
    Ok(if exists > 0 {
        Observed::Unversioned
    } else {
        Observed::Absent
    })
}

/// [`read_copy`] for many keys on one node, sent together (cluster-client pipelines them), results in order.
pub(crate) async fn read_copies(
    client: &ClusterClient,
    node: &str,
    keys: &[Bytes],
) -> Vec<Result<Observed, cluster_client::Error>> {
    futures::future::join_all(keys.iter().map(|key| read_copy(client, node, key))).await
}

/// The whole value `node` holds for `key`, and its remaining TTL (`None`: no TTL). `Ok(None)` when the
/// key is gone.
pub(crate) async fn read_value(
    client: &ClusterClient,
    node: &str,
    key: &Bytes,
) -> Result<Option<(Bytes, Option<Duration>)>, cluster_client::Error> {
    let get = client.node_command::<Option<Bytes>>(node, vec!["GET".into(), Value::Bytes(key.clone())]);
    let pttl = client.node_command::<i64>(node, vec!["PTTL".into(), Value::Bytes(key.clone())]);
    let (value, pttl) = futures::future::join(get, pttl).await;
    let Some(value) = value? else {
        return Ok(None);
    };
    Ok(match pttl? {
        -2 => None,
        ms if ms < 0 => Some((value, None)),
        // A key about to expire keeps at least a millisecond, so that a copy still carries a TTL.
        ms => Some((value, Some(Duration::from_millis(ms.max(1) as u64)))),
    })
}

/// The replication offset `node` has reached: a primary's `master_repl_offset`, a replica's
/// `slave_repl_offset` (what it has applied).
pub(crate) async fn replication_offset(
    client: &ClusterClient,
    node: &str,
) -> Result<u64, cluster_client::Error> {
    let info: String = client
        .node_command(node, vec!["INFO".into(), "replication".into()])
        .await?;
    replies::Info::parse(&info)
        .replication_offset()
        .ok_or_else(|| cluster_client::Error::Reply {
            node: node.into(),
            command: "INFO".into(),
            detail: "no replication offset in INFO replication".into(),
        })
}

/// A node's replication history, from `INFO replication`: its `master_replid`, and if it was
/// promoted, `master_replid2` with `second_repl_offset`.
pub(crate) async fn read_lineage(
    client: &ClusterClient,
    node: &str,
) -> Result<crate::failover::Lineage, cluster_client::Error> {
    let info: String = client
        .node_command(node, vec!["INFO".into(), "replication".into()])
        .await?;
    parse_lineage(&info).ok_or_else(|| cluster_client::Error::Reply {
        node: node.into(),
        command: "INFO".into(),
        detail: "no master_replid in INFO replication".into(),
    })
}

fn parse_lineage(info: &str) -> Option<crate::failover::Lineage> {
    let info = replies::Info::parse(info);
    let replid = info.master_replid.as_deref()?.as_bytes().to_vec();
    let previous = info
        .previous_replication()
        .map(|(id, offset)| (id.as_bytes().to_vec(), offset));
    Some(crate::failover::Lineage { replid, previous })
}

/// The longest a single catch-up wait lasts, whatever it is asked: settings are validated against
/// smaller bounds, and this keeps a deadline computable (`Instant + Duration::MAX` panics).
const CATCH_UP_CAP: Duration = Duration::from_secs(600);

/// Waits until the replica `node` has applied everything up to `offset`, at most `timeout` (capped
/// at ten minutes). Returns whether it did; a replica that cannot be asked has not.
pub(crate) async fn wait_caught_up(
    client: &ClusterClient,
    node: &str,
    offset: u64,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout.min(CATCH_UP_CAP);
    loop {
        match replication_offset(client, node).await {
            Ok(reached) if reached >= offset => return true,
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%node, %error, "could not read a replica's offset");
                return false;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(info: &str, name: &str, want: Option<u64>) {
        assert_eq!(
            replies::Info::parse(info).get_u64(name),
            want,
            "{name} in {info:?}"
        );
    }

    #[test]
    fn info_fields_parse() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nmaster_repl_offset:1234\r\n";
        let replica = "# Replication\r\nrole:slave\r\nslave_repl_offset:1200\r\nmaster_repl_offset:1200\r\n";
        check(primary, "master_repl_offset", Some(1234));
        check(primary, "slave_repl_offset", None);
        check(replica, "slave_repl_offset", Some(1200));
        check(primary, "role", None);
        check("", "master_repl_offset", None);
        // The offset a node has reached: a replica's applied offset, else a primary's.
        let offset = |info: &str| replies::Info::parse(info).replication_offset();
        assert_eq!(
            (offset(primary), offset(replica), offset("")),
            (Some(1234), Some(1200), None)
        );
    }

    #[test]
    fn lineages_parse() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let zeros = "0".repeat(40);
        let promoted = format!(
            "# Replication\r\nrole:master\r\nmaster_replid:{b}\r\nmaster_replid2:{a}\r\n\
             master_repl_offset:5000\r\nsecond_repl_offset:4001\r\n"
        );
        let lineage = parse_lineage(&promoted).unwrap();
        assert_eq!(lineage.replid, b.as_bytes());
        assert_eq!(lineage.previous, Some((a.as_bytes().to_vec(), 4001)));
        let never = format!(
            "role:master\r\nmaster_replid:{a}\r\nmaster_replid2:{zeros}\r\nsecond_repl_offset:-1\r\n"
        );
        assert_eq!(parse_lineage(&never).unwrap().previous, None);
        assert_eq!(parse_lineage("role:master\r\n"), None);
    }
}
