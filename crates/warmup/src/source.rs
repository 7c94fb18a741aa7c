//! Where entries come from: an iterator, an async stream, a JSON-lines file, or another Redis
//! (`SCAN` + `DUMP`/`PTTL`, so that every data type and TTL carries over).

use std::fmt;
use std::io::BufRead;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_client::ClusterClient;
use futures::{Stream, StreamExt};
use serde::Deserialize;

use crate::Error;
use crate::entry::{Entry, Priority};
use crate::error::printable_key;
use crate::report::Rejected;
use crate::undo::{Captured, Previous, parse_capture};

/// Where a warm-up reads its entries from. Read lazily, one window at a time.
pub struct Source {
    kind: Kind,
}

enum Kind {
    Iter(Box<dyn Iterator<Item = Entry> + Send>),
    Stream(Pin<Box<dyn Stream<Item = Entry> + Send>>),
    JsonLines(JsonLines),
    Redis(Box<RedisScan>),
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Source").field(&self.name()).finish()
    }
}

/// What one read of the source gave.
#[derive(Debug, Default)]
pub(crate) struct Window {
    /// The entries read.
    pub(crate) entries: Vec<Entry>,
    /// Each entry's line number, for sources with lines (else empty).
    pub(crate) lines: Vec<u64>,
    /// Input that could not become an entry.
    pub(crate) rejected: Vec<Rejected>,
    /// Keys listed by the source Redis that were gone (deleted or expired) when they were dumped.
    pub(crate) vanished: u64,
    /// The source has nothing more.
    pub(crate) done: bool,
    /// The source failed before its end; nothing after this point was read.
    pub(crate) error: Option<String>,
}

impl Window {
    /// Items read: entries, rejected input and vanished keys.
    pub(crate) fn read(&self) -> u64 {
        (self.entries.len() + self.rejected.len()) as u64 + self.vanished
    }

    fn len(&self) -> usize {
        self.entries.len() + self.rejected.len() + self.vanished as usize
    }
}

impl Source {
    /// Entries from an iterator, read as the warm-up goes.
    pub fn entries<I>(entries: I) -> Source
    where
        I: IntoIterator<Item = Entry>,
        I::IntoIter: Send + 'static,
    {
        Source {
            kind: Kind::Iter(Box::new(entries.into_iter())),
        }
    }

    /// Entries from an async stream, read as the warm-up goes.
    pub fn stream<S>(entries: S) -> Source
    where
        S: Stream<Item = Entry> + Send + 'static,
    {
        Source {
            kind: Kind::Stream(Box::pin(entries)),
        }
    }

    /// A JSON-lines file: one object per line, for example
    /// `{"key": "user:1", "value": "Ada", "ttl_ms": 60000, "priority": "critical"}`.
    ///
    /// `key` is a string; `value` is a string stored as its UTF-8 bytes, or any other JSON value stored
    /// as its compact JSON text; `ttl_ms` (at least 1) and `priority` (`critical`, `high`, `normal`,
    /// `low`) are optional. Blank lines are skipped. A line that is not such an object is reported with
    /// its line number, and the lines after it are still read.
    pub fn json_lines(path: impl Into<PathBuf>) -> Source {
        let path = path.into();
        Source {
            kind: Kind::JsonLines(JsonLines {
                name: path.display().to_string(),
                path: Some(path),
                reader: None,
                line: 0,
            }),
        }
    }

    /// JSON lines (see [`Source::json_lines`]) from any reader, for example standard input.
    pub fn json_lines_reader<R: BufRead + Send + 'static>(reader: R) -> Source {
        Source {
            kind: Kind::JsonLines(JsonLines {
                name: "a JSON-lines reader".into(),
                path: None,
                reader: Some(Box::new(reader)),
                line: 0,
            }),
        }
    }

    /// Every key of another deployment (for example the standalone Redis being migrated to the
    /// cluster): `SCAN` on each of its primaries, then `DUMP` and `PTTL` per key. The entries are
    /// restored with `RESTORE … REPLACE`, so every data type and its remaining TTL carry over.
    pub fn redis(client: ClusterClient, options: RedisSource) -> Source {
        Source {
            kind: Kind::Redis(Box::new(RedisScan {
                client,
                options,
                dump_script: cluster_client::Script::new(crate::script::CAPTURE),
                nodes: None,
                index: 0,
                cursor: 0,
            })),
        }
    }

    /// A name for messages: the file, or what kind of source it is.
    pub fn name(&self) -> String {
        match &self.kind {
            Kind::Iter(_) => "an iterator".into(),
            Kind::Stream(_) => "a stream".into(),
            Kind::JsonLines(json) => json.name.clone(),
            Kind::Redis(scan) => format!("Redis at {}", scan.seed()),
        }
    }

    /// Opens what must be opened before anything is written: the file, the source's topology.
    pub(crate) async fn open(&mut self) -> Result<(), Error> {
        match &mut self.kind {
            Kind::JsonLines(json) => json.open(),
            Kind::Redis(scan) => scan.open(),
            Kind::Iter(_) | Kind::Stream(_) => Ok(()),
        }
    }

    /// Reads up to `max` items.
    pub(crate) async fn next_window(&mut self, max: usize) -> Window {
        match &mut self.kind {
            Kind::Iter(iter) => {
                let entries: Vec<Entry> = iter.by_ref().take(max).collect();
                Window {
                    done: entries.len() < max,
                    entries,
                    ..Window::default()
                }
            }
            Kind::Stream(stream) => {
                let mut window = Window::default();
                while window.entries.len() < max {
                    match stream.next().await {
                        Some(entry) => window.entries.push(entry),
                        None => {
                            window.done = true;
                            break;
                        }
                    }
                }
                window
            }
            Kind::JsonLines(json) => json.next_window(max).await,
            Kind::Redis(scan) => scan.next_window(max).await,
        }
    }
}

struct JsonLines {
    name: String,
    path: Option<PathBuf>,
    reader: Option<Box<dyn BufRead + Send>>,
    /// Lines read so far.
    line: u64,
}

impl JsonLines {
    fn open(&mut self) -> Result<(), Error> {
        if self.reader.is_some() {
            return Ok(());
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = std::fs::File::open(path).map_err(|e| Error::SourceOpen {
            name: self.name.clone(),
            message: e.to_string(),
        })?;
        self.reader = Some(Box::new(std::io::BufReader::with_capacity(1 << 16, file)));
        Ok(())
    }

    async fn next_window(&mut self, max: usize) -> Window {
        let Some(mut reader) = self.reader.take() else {
            return Window {
                done: true,
                ..Window::default()
            };
        };
        let mut line = self.line;
        // Reading a file blocks: do it off the async workers.
        let task = tokio::task::spawn_blocking(move || {
            let window = read_json_lines(&mut reader, &mut line, max);
            (reader, line, window)
        });
        match task.await {
            Ok((reader, line, window)) => {
                self.line = line;
                if !window.done {
                    self.reader = Some(reader);
                }
                window
            }
            Err(e) => Window {
                done: true,
                error: Some(format!("the reading task failed after line {}: {e}", self.line)),
                ..Window::default()
            },
        }
    }
}

/// Reads up to `max` non-blank lines; `line` counts every line read.
fn read_json_lines(reader: &mut dyn BufRead, line: &mut u64, max: usize) -> Window {
    let mut window = Window::default();
    let mut buf = Vec::new();
    while window.len() < max {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => {
                window.done = true;
                return window;
            }
            Ok(_) => {
                *line += 1;
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let parsed = match std::str::from_utf8(&buf) {
                    Ok(text) => parse_json_line(text),
                    Err(e) => Err(format!("the line is not UTF-8 text ({e})")),
                };
                match parsed {
                    Ok(entry) => {
                        window.entries.push(entry);
                        window.lines.push(*line);
                    }
                    Err(reason) => window.rejected.push(Rejected {
                        line: Some(*line),
                        key: None,
                        reason,
                    }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                window.done = true;
                window.error = Some(format!("reading line {} failed: {e}", *line + 1));
                return window;
            }
        }
    }
    window
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    key: String,
    value: serde_json::Value,
    #[serde(default)]
    ttl_ms: Option<u64>,
    #[serde(default)]
    priority: Option<Priority>,
}

/// One JSON-lines entry, or why the line is not one.
pub(crate) fn parse_json_line(text: &str) -> Result<Entry, String> {
    let parsed: JsonEntry = serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "not a warm-up entry ({e}); expected {{\"key\": \"…\", \"value\": …, \"ttl_ms\": 60000, \
             \"priority\": \"normal\"}}"
        )
    })?;
    let value = match parsed.value {
        serde_json::Value::String(text) => Bytes::from(text),
        serde_json::Value::Null => {
            return Err("value is null; give a string, or a JSON value to store as JSON text".into());
        }
        other => Bytes::from(other.to_string()),
    };
    let mut entry = Entry::new(parsed.key, value).priority(parsed.priority.unwrap_or_default());
    match parsed.ttl_ms {
        Some(0) => return Err("ttl_ms is 0; leave it out for no expiry, or give at least 1".into()),
        Some(ms) => entry = entry.ttl(Duration::from_millis(ms)),
        None => {}
    }
    Ok(entry)
}

/// How to read another deployment with [`Source::redis`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisSource {
    /// Only keys matching this `SCAN MATCH` pattern (default: every key).
    pub pattern: Option<Bytes>,
    /// The `COUNT` hint of each `SCAN` step (default 1,000).
    pub scan_count: u32,
    /// The priority of every entry read (default [`Priority::Normal`]).
    pub priority: Priority,
}

impl Default for RedisSource {
    fn default() -> Self {
        RedisSource {
            pattern: None,
            scan_count: 1_000,
            priority: Priority::Normal,
        }
    }
}

impl RedisSource {
    /// Only keys matching a `SCAN MATCH` pattern.
    pub fn pattern(mut self, pattern: impl Into<Bytes>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Sets the `SCAN COUNT` hint (at least 1).
    pub fn scan_count(mut self, count: u32) -> Self {
        self.scan_count = count.max(1);
        self
    }

    /// Sets the priority of every entry.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
}

/// Attempts of one `SCAN` step before the source counts as failed.
const SCAN_ATTEMPTS: u32 = 3;

struct RedisScan {
    client: ClusterClient,
    options: RedisSource,
    /// `DUMP` + `PTTL` in one step, answering a payload only when it fits the limit.
    dump_script: cluster_client::Script,
    /// The primaries to scan, fixed when the warm-up starts.
    nodes: Option<Vec<String>>,
    index: usize,
    cursor: u64,
}

impl RedisScan {
    fn seed(&self) -> String {
        self.client
            .topology()
            .shards()
            .first()
            .map(|s| s.primary.clone())
            .unwrap_or_default()
    }

    fn open(&mut self) -> Result<(), Error> {
        let nodes: Vec<String> = self
            .client
            .topology()
            .shards()
            .iter()
            .map(|s| s.primary.clone())
            .collect();
        if nodes.is_empty() {
            return Err(Error::SourceRedis(cluster_client::Error::NoSeedReachable {
                tried: self.seed(),
                last: "the source has no primary to scan".into(),
            }));
        }
        self.nodes = Some(nodes);
        Ok(())
    }

    async fn next_window(&mut self, max: usize) -> Window {
        let nodes = self.nodes.clone().unwrap_or_default();
        let mut window = Window::default();
        while window.len() < max {
            let Some(node) = nodes.get(self.index) else {
                window.done = true;
                return window;
            };
            let step = self.scan_step(node).await;
            let (next, keys) = match step {
                Ok(step) => step,
                Err(error) => {
                    window.done = true;
                    window.error = Some(format!("scanning {node} failed: {error}"));
                    return window;
                }
            };
            let keys = match check_scan_reply(self.cursor, next, keys, self.options.scan_count) {
                Ok(keys) => keys,
                Err(error) => {
                    window.done = true;
                    window.error = Some(format!("scanning {node} failed: {error}"));
                    return window;
                }
            };
            self.dump(node, keys, &mut window).await;
            if next == 0 {
                self.index += 1;
            }
            self.cursor = next;
        }
        window
    }

    async fn scan_step(&self, node: &str) -> Result<(u64, Vec<Bytes>), cluster_client::Error> {
        let mut attempt = 1;
        loop {
            let step = self
                .client
                .scan_node(
                    node,
                    self.cursor,
                    self.options.pattern.as_deref(),
                    self.options.scan_count,
                )
                .await;
            match step {
                Err(error) if error.is_transient() && attempt < SCAN_ATTEMPTS => {
                    tracing::debug!(%node, %error, "retrying a SCAN step");
                    // The client's configured backoff (REDIS_RETRY_*), like every retry loop of the workspace.
                    let pause = cluster_config::Backoff::from(self.client.config().retry()).jittered(attempt);
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `DUMP` and `PTTL` of each key in one script call per key, sent together (cluster-client pipelines them
    /// on the node's connection). The script answers a payload only when it is within the source
    /// client's `value_max_bytes`, so a huge value is refused by its size, never received.
    async fn dump(&self, node: &str, keys: Vec<Bytes>, window: &mut Window) {
        let priority = self.options.priority;
        let limits = self.client.config().limits();
        let (key_max, value_max) = (limits.key_max_bytes, limits.value_max_bytes);
        let reads = keys.into_iter().map(|key| async move {
            if key.len() > key_max {
                let reason = format!(
                    "key of {} bytes is over the limit of {key_max} bytes (REDIS_KEY_MAX_BYTES); \
                     raise the limit to copy it",
                    key.len()
                );
                return (key, Err(reason));
            }
            let read = self.dump_one(node, &key, value_max).await;
            (key, read)
        });
        for (key, read) in futures::future::join_all(reads).await {
            match read {
                Ok(SourceRead::Present { payload, ttl }) => {
                    let entry = Entry::from_dump(key, payload).priority(priority);
                    match ttl {
                        None => window.entries.push(entry),
                        Some(ttl) => window.entries.push(entry.ttl(ttl)),
                    }
                }
                Ok(SourceRead::Gone) => window.vanished += 1,
                Ok(SourceRead::TooBig(size)) => window.rejected.push(Rejected {
                    line: None,
                    reason: format!(
                        "value of {size} bytes is over the limit of {value_max} bytes (REDIS_VALUE_MAX_BYTES) \
                         of the source's client; it was not read. Raise the limit to copy it"
                    ),
                    key: Some(key),
                }),
                Err(error) => window.rejected.push(Rejected {
                    line: None,
                    reason: format!("reading {} from the source failed: {error}", printable_key(&key)),
                    key: Some(key),
                }),
            }
        }
    }

    /// One key's `DUMP` and `PTTL`, atomically, within `max` payload bytes.
    async fn dump_one(&self, node: &str, key: &Bytes, max: usize) -> Result<SourceRead, String> {
        // `eval_on_node` sends the script's source to a node that lacks it.
        let max_arg = max.to_string();
        let reply = self
            .client
            .eval_on_node(node, &self.dump_script, &[&key[..]], &[max_arg.as_bytes()])
            .await;
        let read_at = Instant::now();
        let mut captured = parse_capture(reply.map_err(|e| e.to_string())?, 1, max, read_at)?;
        Ok(match captured.pop() {
            Some(Captured::Previous(Previous::Present { payload, expires_at })) => SourceRead::Present {
                payload,
                ttl: expires_at.map(|at| at.duration_since(read_at)),
            },
            Some(Captured::Previous(Previous::Absent)) => SourceRead::Gone,
            Some(Captured::TooBig(size)) => SourceRead::TooBig(size),
            None => return Err("no reply for the key".into()),
        })
    }
}

/// A source key as read.
#[derive(Debug)]
enum SourceRead {
    /// Its payload and remaining TTL.
    Present { payload: Bytes, ttl: Option<Duration> },
    /// Deleted or expired since it was listed.
    Gone,
    /// Its payload is this many bytes, over the limit: not read.
    TooBig(usize),
}

/// The most keys one `SCAN` step may answer for `COUNT count`: Redis answers about `count`, a few
/// times more when its buckets are crowded; a reply far past that is refused, not planned.
fn scan_reply_bound(count: u32) -> usize {
    (count as usize).saturating_mul(10).max(10_000)
}

/// Checks a `SCAN` step's reply before its keys are read further: a cursor that answers itself would
/// scan for ever, and a page far past `COUNT` is refused.
fn check_scan_reply(sent: u64, next: u64, keys: Vec<Bytes>, count: u32) -> Result<Vec<Bytes>, String> {
    if next != 0 && next == sent {
        return Err(format!(
            "SCAN answered its own cursor {sent}, so it would never end; check the source server"
        ));
    }
    let bound = scan_reply_bound(count);
    if keys.len() > bound {
        return Err(format!(
            "one SCAN step answered {} keys for COUNT {count}, more than the {bound} accepted",
            keys.len()
        ));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, want: Result<Entry, &str>) {
        match (parse_json_line(line), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{line}"),
            (Err(got), Err(want)) => assert!(got.contains(want), "{line}: {got} should mention {want}"),
            (got, want) => panic!("{line}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn json_lines_parse_into_entries() {
        check(r#"{"key": "a", "value": "1"}"#, Ok(Entry::new("a", "1")));
        check(
            r#"{"key":"user:1","value":"Ada","ttl_ms":60000,"priority":"critical"}"#,
            Ok(Entry::new("user:1", "Ada")
                .ttl(Duration::from_secs(60))
                .priority(Priority::Critical)),
        );
        check(
            r#"{"key": "doc", "value": {"name": "Ada", "tags": [1, 2]}}"#,
            Ok(Entry::new("doc", r#"{"name":"Ada","tags":[1,2]}"#)),
        );
        check(
            r#"{"key": "n", "value": 42, "priority": "low"}"#,
            Ok(Entry::new("n", "42").priority(Priority::Low)),
        );
        check(
            "  {\"key\": \"s\", \"value\": \"é\"}\r\n",
            Ok(Entry::new("s", "é")),
        );
        check(r#"{"key": "a"}"#, Err("missing field `value`"));
        check(r#"{"key": "a", "value": null}"#, Err("value is null"));
        check(r#"{"key": "a", "value": "x", "ttl_ms": 0}"#, Err("ttl_ms is 0"));
        check(
            r#"{"key": "a", "value": "x", "ttl_ms": -5}"#,
            Err("not a warm-up entry"),
        );
        check(
            r#"{"key": "a", "value": "x", "ttl": 5}"#,
            Err("unknown field `ttl`"),
        );
        check(
            r#"{"key": "a", "value": "x", "priority": "urgent"}"#,
            Err("unknown variant `urgent`"),
        );
        check(r#"{"key": 7, "value": "x"}"#, Err("not a warm-up entry"));
        check("{not json", Err("expected {\"key\""));
    }

    fn lines_of(window: &Window) -> Vec<(Option<u64>, bool)> {
        let mut lines: Vec<(Option<u64>, bool)> = window
            .lines
            .iter()
            .map(|l| (Some(*l), true))
            .chain(window.rejected.iter().map(|r| (r.line, false)))
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn json_lines_keep_line_numbers_across_windows() {
        let text = b"{\"key\":\"a\",\"value\":\"1\"}\n\n{broken\n{\"key\":\"b\",\"value\":\"\xFF\"}\n\xFF\xFE\n{\"key\":\"c\",\"value\":\"3\"}";
        let mut reader = std::io::Cursor::new(&text[..]);
        let mut line = 0;
        let first = read_json_lines(&mut reader, &mut line, 2);
        assert_eq!(lines_of(&first), [(Some(1), true), (Some(3), false)]);
        assert!(!first.done);
        let rest = read_json_lines(&mut reader, &mut line, 10);
        assert_eq!(
            lines_of(&rest),
            [(Some(4), false), (Some(5), false), (Some(6), true)]
        );
        assert!(rest.done && rest.error.is_none());
        assert!(
            rest.rejected[1].reason.contains("not UTF-8"),
            "{}",
            rest.rejected[1].reason
        );
        assert_eq!(rest.entries.len(), rest.lines.len());
    }

    #[test]
    fn scan_replies_are_bounded_before_their_keys_are_read() {
        let keys = |n: usize| (0..n).map(|i| Bytes::from(i.to_string())).collect::<Vec<_>>();
        assert_eq!(
            check_scan_reply(0, 5, keys(10_000), 1).map(|k| k.len()),
            Ok(10_000)
        );
        assert_eq!(
            check_scan_reply(5, 0, keys(20_000), 2_000).map(|k| k.len()),
            Ok(20_000)
        );
        let error = check_scan_reply(0, 5, keys(10_001), 1_000).expect_err("too many keys");
        assert!(error.contains("answered 10001 keys for COUNT 1000"), "{error}");
        let error = check_scan_reply(7, 7, keys(0), 1_000).expect_err("a cursor that does not move");
        assert!(error.contains("never end"), "{error}");
        // Cursor 0 sent and answered: a source with nothing to scan, done.
        assert!(check_scan_reply(0, 0, keys(0), 1_000).is_ok());
        // A COUNT near the top of its range does not overflow the bound.
        assert!(scan_reply_bound(u32::MAX) >= u32::MAX as usize);
    }

    #[tokio::test]
    async fn iterators_and_streams_read_in_windows() {
        let entries = |n: usize| {
            (0..n)
                .map(|i| Entry::new(format!("k{i}"), "v"))
                .collect::<Vec<_>>()
        };
        for mut source in [
            Source::entries(entries(5)),
            Source::stream(futures::stream::iter(entries(5))),
        ] {
            let first = source.next_window(3).await;
            assert_eq!((first.entries.len(), first.done), (3, false), "{source:?}");
            let second = source.next_window(3).await;
            assert_eq!(
                (second.entries.len(), second.read(), second.done),
                (2, 2, true),
                "{source:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_file_fails_to_open() {
        let mut source = Source::json_lines("/nonexistent/warmup.jsonl");
        let error = source.open().await.expect_err("the file does not exist");
        assert!(error.to_string().contains("/nonexistent/warmup.jsonl"), "{error}");
    }
}
