//! The reply to an admin command, and its conversion into the Rust type a caller asks for.

/// A node's reply to one command, in RESP2 terms.
///
/// ```
/// use local_cluster::{FromReply, Reply};
///
/// assert_eq!(String::from_reply(Reply::Bytes(b"PONG".to_vec())), Ok("PONG".to_string()));
/// assert_eq!(u64::from_reply(Reply::Int(3)), Ok(3));
/// assert_eq!(Option::<String>::from_reply(Reply::Nil), Ok(None));
/// assert!(u64::from_reply(Reply::Bytes(b"many".to_vec())).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// No value (`$-1`, `*-1`): a missing key, for instance.
    Nil,
    /// A status line such as `OK` or `PONG`.
    Status(String),
    /// An error inside an array reply (an error as the whole reply fails the call instead).
    Error(String),
    /// An integer.
    Int(i64),
    /// A bulk string: binary-safe bytes.
    Bytes(Vec<u8>),
    /// An array of replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// The bytes of a bulk string or status line.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bytes(bytes) => Some(bytes),
            Reply::Status(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// The reply as text, if it is a bulk string of UTF-8, a status line or an integer.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Reply::Bytes(bytes) => String::from_utf8(bytes.clone()).ok(),
            Reply::Status(text) => Some(text.clone()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Reply::Nil => "nil",
            Reply::Status(_) => "a status line",
            Reply::Error(_) => "an error",
            Reply::Int(_) => "an integer",
            Reply::Bytes(_) => "a bulk string",
            Reply::Array(_) => "an array",
        }
    }
}

/// Conversion of a [`Reply`] into the type a command's caller wants, as `node.command::<u64, _, _>(..)`.
///
/// The error is a sentence saying what the reply was instead.
pub trait FromReply: Sized {
    /// Converts the reply, or says why it cannot.
    fn from_reply(reply: Reply) -> Result<Self, String>;
}

fn unexpected<T>(reply: &Reply, wanted: &str) -> Result<T, String> {
    Err(format!("expected {wanted}, got {}", reply.kind()))
}

impl FromReply for Reply {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        Ok(reply)
    }
}

/// Any reply but nil, discarded: for commands run for their effect.
impl FromReply for () {
    fn from_reply(_: Reply) -> Result<Self, String> {
        Ok(())
    }
}

impl FromReply for String {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        match reply {
            Reply::Bytes(bytes) => {
                String::from_utf8(bytes).map_err(|_| "expected text, got bytes that are not UTF-8".into())
            }
            Reply::Status(text) => Ok(text),
            Reply::Int(i) => Ok(i.to_string()),
            other => unexpected(&other, "text"),
        }
    }
}

impl FromReply for Vec<u8> {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        match reply {
            Reply::Bytes(bytes) => Ok(bytes),
            Reply::Status(text) => Ok(text.into_bytes()),
            Reply::Int(i) => Ok(i.to_string().into_bytes()),
            other => unexpected(&other, "bytes"),
        }
    }
}

impl FromReply for i64 {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        match &reply {
            Reply::Int(i) => Ok(*i),
            Reply::Bytes(_) | Reply::Status(_) => reply
                .to_text()
                .and_then(|t| t.parse().ok())
                .map_or_else(|| unexpected(&reply, "an integer"), Ok),
            _ => unexpected(&reply, "an integer"),
        }
    }
}

impl FromReply for u64 {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        let kind = reply.kind();
        let value = i64::from_reply(reply)?;
        u64::try_from(value).map_err(|_| format!("expected a non-negative integer, got {kind} {value}"))
    }
}

impl FromReply for bool {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        Ok(i64::from_reply(reply)? != 0)
    }
}

/// Nil is `None`; anything else converts as `T`.
impl<T: FromReply> FromReply for Option<T> {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        match reply {
            Reply::Nil => Ok(None),
            other => T::from_reply(other).map(Some),
        }
    }
}

/// An array, element by element; nil is an empty array. (`Vec<u8>` is a bulk string: `u8` is no
/// reply of its own.)
impl<T: FromReply> FromReply for Vec<T> {
    fn from_reply(reply: Reply) -> Result<Self, String> {
        match reply {
            Reply::Array(items) => items.into_iter().map(T::from_reply).collect(),
            Reply::Nil => Ok(Vec::new()),
            other => unexpected(&other, "an array"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: FromReply + PartialEq + std::fmt::Debug>(reply: Reply, want: Result<T, &str>) {
        let got = T::from_reply(reply.clone());
        match (&got, &want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{reply:?}"),
            (Err(message), Err(fragment)) => assert!(message.contains(fragment), "{reply:?}: {message}"),
            _ => panic!("{reply:?}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn replies_convert_or_say_what_they_were() {
        check(Reply::Status("PONG".into()), Ok("PONG".to_string()));
        check(Reply::Int(7), Ok("7".to_string()));
        check::<String>(Reply::Nil, Err("expected text, got nil"));
        check::<String>(Reply::Bytes(vec![0xff]), Err("not UTF-8"));
        check(Reply::Bytes(b"42".to_vec()), Ok(42u64));
        check::<u64>(Reply::Int(-1), Err("non-negative"));
        check::<i64>(Reply::Array(vec![]), Err("an array"));
        check(Reply::Nil, Ok(None::<String>));
        check(Reply::Bytes(b"v".to_vec()), Ok(Some(b"v".to_vec())));
        check(
            Reply::Array(vec![Reply::Bytes(b"a".to_vec()), Reply::Bytes(b"b".to_vec())]),
            Ok(vec![b"a".to_vec(), b"b".to_vec()]),
        );
        check(Reply::Nil, Ok(Vec::<String>::new()));
        check::<Vec<String>>(Reply::Int(1), Err("an array"));
        check(Reply::Int(1), Ok(true));
        check(Reply::Status("OK".into()), Ok(()));
    }
}
