//! Short-lived admin connections to one node: one RESP2 command, one reply, over a plain TCP stream or,
//! for TLS nodes, a TLS stream over it.
//!
//! local-cluster only starts servers and drives them through admin commands, so it speaks the protocol
//! itself (frames by `redis-protocol`) rather than through a client library: nothing here pipelines,
//! reconnects or routes. Every call has a deadline and a reply larger than [`MAX_REPLY_BYTES`] is
//! refused, so a node that stalls or misbehaves fails the call instead of hanging or exhausting memory.
//! A connection whose call failed midway is closed, since its next reply could belong to the old call.

use std::time::Duration;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::Error;
use crate::reply::{FromReply, Reply};
use crate::tls::TlsFiles;

/// A byte stream to a node: plain TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The longest one command may take, `MIGRATE` of a batch of keys included.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest reply accepted. Admin replies are small (`CLUSTER NODES`, `INFO`, a batch of key names);
/// this bounds what a confused server can make us buffer.
pub(crate) const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// An open admin connection to one node.
pub(crate) struct Conn {
    /// `None` once a call failed midway: the stream may hold the rest of that call's reply.
    stream: Mutex<Option<Box<dyn Io>>>,
    addr: String,
}

impl Conn {
    /// Connects to `127.0.0.1:port` (with TLS when `tls` is given), failing within `timeout` when nothing
    /// answers.
    pub(crate) async fn open(port: u16, timeout: Duration, tls: Option<&TlsFiles>) -> Result<Conn, Error> {
        let addr = cluster_config::NodeAddr::new("127.0.0.1", port).to_string();
        let failed = |detail: String| Error::Command {
            addr: addr.clone(),
            command: "connect".into(),
            detail,
        };
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(failed(error.to_string())),
            Err(_) => return Err(failed(format!("no connection within {timeout:?}"))),
        };
        // Admin commands are single round trips: waiting to batch small writes only adds latency.
        stream.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
        let stream: Box<dyn Io> = match tls {
            None => Box::new(stream),
            Some(files) => {
                let connector = files.connector()?;
                let name = rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
                match tokio::time::timeout(timeout, connector.connect(name, stream)).await {
                    Ok(Ok(stream)) => Box::new(stream),
                    Ok(Err(error)) => return Err(failed(format!("TLS handshake failed: {error}"))),
                    Err(_) => return Err(failed(format!("no TLS handshake within {timeout:?}"))),
                }
            }
        };
        Ok(Conn {
            stream: Mutex::new(Some(stream)),
            addr,
        })
    }

    /// Sends one command (`args[0]` is the command name) and converts the reply.
    pub(crate) async fn call<R: FromReply, A: AsRef<[u8]>>(&self, args: &[A]) -> Result<R, Error> {
        if args.is_empty() {
            return Err(Error::Invalid("a command needs a name".into()));
        }
        let describe = || describe(args);
        let reply = {
            let mut guard = self.stream.lock().await;
            let Some(stream) = guard.as_mut() else {
                return Err(Error::Command {
                    addr: self.addr.clone(),
                    command: describe(),
                    detail: "the connection was closed after an earlier call failed; open a new one".into(),
                });
            };
            match tokio::time::timeout(COMMAND_TIMEOUT, round_trip(stream, args)).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(detail)) => {
                    *guard = None;
                    return Err(Error::Command {
                        addr: self.addr.clone(),
                        command: describe(),
                        detail,
                    });
                }
                Err(_) => {
                    *guard = None;
                    return Err(Error::Command {
                        addr: self.addr.clone(),
                        command: describe(),
                        detail: format!("no reply within {COMMAND_TIMEOUT:?}"),
                    });
                }
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(server_error) => {
                return Err(Error::Command {
                    addr: self.addr.clone(),
                    command: describe(),
                    detail: server_error,
                });
            }
        };
        R::from_reply(reply).map_err(|detail| Error::Reply {
            addr: self.addr.clone(),
            command: describe(),
            detail,
        })
    }

    /// Like [`Conn::call`] for commands whose words are all text.
    pub(crate) async fn call_str<R: FromReply>(&self, words: &[&str]) -> Result<R, Error> {
        self.call(words).await
    }

    /// `INFO <section>`, parsed.
    pub(crate) async fn info(&self, section: &str) -> Result<replies::Info, Error> {
        let text: String = self.call_str(&["INFO", section]).await?;
        Ok(replies::Info::parse(&text))
    }

    /// `CLUSTER INFO`, parsed.
    pub(crate) async fn cluster_info(&self) -> Result<replies::Info, Error> {
        let text: String = self.call_str(&["CLUSTER", "INFO"]).await?;
        Ok(replies::Info::parse(&text))
    }

    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Closes the connection. Dropping the stream closes the socket at once; there is no goodbye to
    /// wait for.
    pub(crate) fn close(self) {}
}

/// Writes one command and reads its reply: `Ok(Err(message))` for a server error reply, `Err(detail)`
/// when the connection itself failed.
async fn round_trip<A: AsRef<[u8]>>(
    stream: &mut Box<dyn Io>,
    args: &[A],
) -> Result<Result<Reply, String>, String> {
    let words: Vec<BorrowedFrame<'_>> = args
        .iter()
        .map(|arg| BorrowedFrame::BulkString(arg.as_ref()))
        .collect();
    let frame = BorrowedFrame::Array(&words);
    let mut out = vec![0; frame.encode_len(false)];
    encode_borrowed(&mut out, &frame, false).map_err(|e| format!("could not encode the command: {e}"))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("could not send: {e}"))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        match decode(&buf) {
            Ok(Some((frame, _))) => return Ok(into_reply(frame)),
            Ok(None) => {}
            Err(e) => return Err(format!("unreadable reply: {e}")),
        }
        if buf.len() >= MAX_REPLY_BYTES {
            return Err(format!("the reply exceeds {MAX_REPLY_BYTES} bytes"));
        }
        let room = (MAX_REPLY_BYTES - buf.len()).min(64 * 1024);
        let before = buf.len();
        buf.resize(before + room, 0);
        let read = stream.read(&mut buf[before..]).await;
        match read {
            Ok(0) => return Err("the node closed the connection".into()),
            Ok(n) => buf.truncate(before + n),
            Err(e) => return Err(format!("could not read the reply: {e}")),
        }
    }
}

/// A decoded frame as a [`Reply`]; a top-level error frame is the server refusing the command.
fn into_reply(frame: OwnedFrame) -> Result<Reply, String> {
    match frame {
        OwnedFrame::Error(message) => Err(message),
        other => Ok(reply(other)),
    }
}

fn reply(frame: OwnedFrame) -> Reply {
    match frame {
        OwnedFrame::SimpleString(s) => Reply::Status(String::from_utf8_lossy(&s).into_owned()),
        // Inside an array (EXEC, scripts), an error is a value like any other.
        OwnedFrame::Error(message) => Reply::Error(message),
        OwnedFrame::Integer(i) => Reply::Int(i),
        OwnedFrame::BulkString(b) => Reply::Bytes(b),
        OwnedFrame::Array(items) => Reply::Array(items.into_iter().map(reply).collect()),
        OwnedFrame::Null => Reply::Nil,
    }
}

/// The command's first words, for error messages: never every argument (values can be large).
fn describe<A: AsRef<[u8]>>(args: &[A]) -> String {
    let mut words: Vec<String> = args
        .iter()
        .take(4)
        .map(|a| String::from_utf8_lossy(a.as_ref()).into_owned())
        .collect();
    if args.len() > 4 {
        words.push("...".into());
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_described_by_their_first_words() {
        assert_eq!(describe(&["PING"]), "PING");
        assert_eq!(
            describe(&["CLUSTER", "SETSLOT", "7", "NODE", "abc"]),
            "CLUSTER SETSLOT 7 NODE ..."
        );
    }

    #[test]
    fn frames_become_replies_and_top_level_errors_fail() {
        assert_eq!(
            into_reply(OwnedFrame::Error("ERR no".into())),
            Err("ERR no".into())
        );
        assert_eq!(
            into_reply(OwnedFrame::Array(vec![
                OwnedFrame::Integer(1),
                OwnedFrame::Null,
                OwnedFrame::Error("ERR inner".into()),
                OwnedFrame::SimpleString(b"OK".to_vec()),
                OwnedFrame::BulkString(b"v".to_vec()),
            ])),
            Ok(Reply::Array(vec![
                Reply::Int(1),
                Reply::Nil,
                Reply::Error("ERR inner".into()),
                Reply::Status("OK".into()),
                Reply::Bytes(b"v".to_vec()),
            ]))
        );
    }
}
