//! The reply type of this crate, [`Value`], and the conversion trait [`FromValue`].
//!
//! fred parses replies into its own value type; this crate converts them to [`Value`] where a reply
//! leaves the crate ([`ClusterClient::eval`](crate::ClusterClient::eval),
//! [`ClusterClient::node_command`](crate::ClusterClient::node_command), ...), and converts arguments the
//! other way on their way in, so that no other crate depends on fred's types. The single-key calls
//! (`get`, `set`, ...) never build a [`Value`]: they answer `Bytes`, `bool` and the like directly.
//!
//! A string reply is [`Value::Bytes`] whether or not it is valid UTF-8 (Redis strings are binary-safe);
//! the text helpers ([`Value::as_str`], [`Value::as_string`], [`Value::as_i64`], ...) decode it. So
//! converting fred's reply costs no copy of any string.

use bytes::Bytes;
use fred::types::Value as FredValue;

use crate::Error;

/// One reply (or argument) of a Redis command.
///
/// ```
/// use cluster_client::{Bytes, Value};
///
/// // Arguments: text, bytes and numbers convert with `From`.
/// let args: Vec<Value> = vec!["SET".into(), Bytes::from_static(b"k").into(), 42.into()];
/// assert_eq!(args[2].as_i64(), Some(42));
///
/// // Replies: match on the variants, or convert to a Rust type.
/// let reply = Value::Array(vec![Value::Integer(1), Value::from("abc")]);
/// let items = reply.clone().into_array();
/// assert_eq!((items[0].as_i64(), items[1].as_str()), (Some(1), Some("abc")));
/// let parsed: Vec<String> = reply.convert()?;
/// assert_eq!(parsed, ["1", "abc"]);
/// # Ok::<(), cluster_client::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `nil`: a missing key, a null bulk string or array.
    Null,
    /// An integer reply.
    Integer(i64),
    /// A double reply (RESP3; RESP2 sends doubles as strings).
    Double(f64),
    /// A boolean reply (RESP3; Lua `true` arrives as the integer 1 over RESP2).
    Boolean(bool),
    /// A string reply (bulk, simple, verbatim or big number), as the bytes the server sent, UTF-8 or
    /// not.
    Bytes(Bytes),
    /// An array (or a RESP3 set or push) of replies.
    Array(Vec<Value>),
    /// A RESP3 map, as key and value pairs.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Whether this is [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The bytes of a string reply.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// A string reply that is valid UTF-8, without copying.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The reply as text: a string reply that is valid UTF-8, or a number or boolean written out.
    /// `None` for `nil`, arrays, maps and binary strings.
    pub fn as_string(&self) -> Option<String> {
        match self {
            Value::Bytes(_) => self.as_str().map(str::to_owned),
            Value::Integer(i) => Some(i.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// The bytes of a string reply (shared, not copied), or an integer written out.
    pub fn into_bytes(self) -> Option<Bytes> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            Value::Integer(i) => Some(Bytes::from(i.to_string())),
            _ => None,
        }
    }

    /// An integer reply, or a string reply holding a decimal integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => self.as_str()?.parse().ok(),
        }
    }

    /// A non-negative integer reply, or a string reply holding one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Integer(i) => u64::try_from(*i).ok(),
            _ => self.as_str()?.parse().ok(),
        }
    }

    /// A double or integer reply, or a string reply holding a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Double(d) => Some(*d),
            Value::Integer(i) => Some(*i as f64),
            _ => self.as_str()?.parse().ok(),
        }
    }

    /// A boolean reply, the integers 1 and 0, or the strings `1`, `0`, `true` and `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            Value::Integer(1) => Some(true),
            Value::Integer(0) => Some(false),
            Value::Bytes(bytes) => match &bytes[..] {
                b"1" | b"true" => Some(true),
                b"0" | b"false" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// The items of an array; a map's keys and values, alternating; any other reply as the only item.
    pub fn into_array(self) -> Vec<Value> {
        match self {
            Value::Array(items) => items,
            Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
            other => vec![other],
        }
    }

    /// Converts the reply to `T` (see [`FromValue`] for what converts to what).
    pub fn convert<T: FromValue>(self) -> Result<T, Error> {
        T::from_value(self)
    }

    /// What kind of reply this is, for error messages (never the reply's content, which may be
    /// sensitive).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nil",
            Value::Integer(_) => "an integer",
            Value::Double(_) => "a double",
            Value::Boolean(_) => "a boolean",
            Value::Bytes(_) => "a string",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Bytes(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Bytes(Bytes::from(text))
    }
}

impl From<&String> for Value {
    fn from(text: &String) -> Value {
        Value::from(text.as_str())
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Value {
        Value::Bytes(bytes)
    }
}

impl From<&[u8]> for Value {
    fn from(bytes: &[u8]) -> Value {
        Value::Bytes(Bytes::copy_from_slice(bytes))
    }
}

impl From<Vec<u8>> for Value {
    fn from(bytes: Vec<u8>) -> Value {
        Value::Bytes(Bytes::from(bytes))
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Integer(i)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Value {
        Value::Integer(i64::from(i))
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Value {
        Value::Integer(i64::from(i))
    }
}

impl From<u16> for Value {
    fn from(i: u16) -> Value {
        Value::Integer(i64::from(i))
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Value {
        Value::Double(d)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

/// A Rust type a [`Value`] converts to, as
/// [`ClusterClient::node_command`](crate::ClusterClient::node_command) and [`Value::convert`] do.
///
/// | Type | Converts from |
/// |---|---|
/// | [`Value`] | anything, unchanged |
/// | `()` | anything, discarded |
/// | [`Bytes`], `Vec<u8>` | a string; an integer, written out |
/// | `String` | a UTF-8 string; a number or boolean, written out |
/// | `i64`, `i32`, `u64`, `u32`, `u16`, `usize` | an integer in range, or a string holding one |
/// | `f64` | a double or integer, or a string holding a number |
/// | `bool` | a boolean, the integers 1 and 0, the strings `1`, `0`, `true`, `false` |
/// | `Option<T>` | `nil` as `None`, anything else as `Some(T)` |
/// | `Vec<T>` | array items; a map's keys and values, alternating; `nil` as empty; else one item |
///
/// Anything else is an [`Error::Conversion`] naming the kinds expected and found (never the reply's
/// content). Implement it for your own types to read structured replies.
pub trait FromValue: Sized {
    /// Converts `value`, or says why it cannot be.
    fn from_value(value: Value) -> Result<Self, Error>;
}

fn mismatch(expected: &'static str, found: &Value) -> Error {
    Error::Conversion {
        expected,
        found: found.kind(),
    }
}

impl FromValue for Value {
    fn from_value(value: Value) -> Result<Self, Error> {
        Ok(value)
    }
}

impl FromValue for () {
    fn from_value(_: Value) -> Result<Self, Error> {
        Ok(())
    }
}

impl FromValue for Bytes {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Bytes(bytes) => Ok(bytes),
            Value::Integer(i) => Ok(Bytes::from(i.to_string())),
            other => Err(mismatch("a string", &other)),
        }
    }
}

impl FromValue for String {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Bytes(bytes) => String::from_utf8(bytes.into()).map_err(|_| Error::Conversion {
                expected: "UTF-8 text",
                found: "a binary string",
            }),
            other => other.as_string().ok_or_else(|| mismatch("text", &other)),
        }
    }
}

macro_rules! integer_from_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(value: Value) -> Result<Self, Error> {
                let number = match &value {
                    Value::Integer(i) => <$t>::try_from(*i).ok(),
                    _ => value.as_str().and_then(|text| text.parse().ok()),
                };
                number.ok_or_else(|| mismatch(concat!("an integer that fits ", stringify!($t)), &value))
            }
        }
    )*};
}

integer_from_value!(i64, i32, u64, u32, u16, usize);

impl FromValue for f64 {
    fn from_value(value: Value) -> Result<Self, Error> {
        value.as_f64().ok_or_else(|| mismatch("a number", &value))
    }
}

impl FromValue for bool {
    fn from_value(value: Value) -> Result<Self, Error> {
        value.as_bool().ok_or_else(|| mismatch("a boolean", &value))
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// Bytes as a whole: a `Vec<u8>` is the string's bytes, not an array of small integers.
impl FromValue for Vec<u8> {
    fn from_value(value: Value) -> Result<Self, Error> {
        Bytes::from_value(value).map(Vec::from)
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(value: Value) -> Result<Self, Error> {
        match value {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items.into_iter().map(T::from_value).collect(),
            Value::Map(pairs) => pairs
                .into_iter()
                .flat_map(|(k, v)| [k, v])
                .map(T::from_value)
                .collect(),
            other => Ok(vec![T::from_value(other)?]),
        }
    }
}

/// fred's reply as this crate's: strings keep their buffer (no copy), arrays convert item by item in
/// their own allocation where the sizes allow.
pub(crate) fn from_fred(value: FredValue) -> Value {
    match value {
        FredValue::Null => Value::Null,
        FredValue::Integer(i) => Value::Integer(i),
        FredValue::Double(d) => Value::Double(d),
        FredValue::Boolean(b) => Value::Boolean(b),
        FredValue::String(text) => Value::Bytes(text.into_inner()),
        FredValue::Bytes(bytes) => Value::Bytes(bytes),
        FredValue::Queued => Value::Bytes(Bytes::from_static(b"QUEUED")),
        FredValue::Array(items) => Value::Array(items.into_iter().map(from_fred).collect()),
        FredValue::Map(map) => Value::Map(
            map.inner()
                .into_iter()
                .map(|(key, value)| (Value::Bytes(key.into_bytes()), from_fred(value)))
                .collect(),
        ),
    }
}

/// Command arguments as fred's: nested arrays and maps are flattened into the argument list, as the
/// server only takes a flat list of strings.
pub(crate) fn to_fred(args: Vec<Value>) -> Vec<FredValue> {
    let mut out = Vec::with_capacity(args.len());
    for arg in args {
        push_fred(&mut out, arg);
    }
    out
}

fn push_fred(out: &mut Vec<FredValue>, arg: Value) {
    match arg {
        Value::Null => out.push(FredValue::Null),
        Value::Integer(i) => out.push(FredValue::Integer(i)),
        Value::Double(d) => out.push(FredValue::Double(d)),
        Value::Boolean(b) => out.push(FredValue::Boolean(b)),
        Value::Bytes(bytes) => out.push(FredValue::Bytes(bytes)),
        Value::Array(items) => {
            for item in items {
                push_fred(out, item);
            }
        }
        Value::Map(pairs) => {
            for (key, value) in pairs {
                push_fred(out, key);
                push_fred(out, value);
            }
        }
    }
}

/// fred's integer argument, also from a string holding one (arguments arrive from [`to_fred`] as bytes).
pub(crate) fn fred_i64(value: &FredValue) -> Option<i64> {
    match value {
        FredValue::Bytes(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        other => other.as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use fred::types::{Key, Map};

    use super::*;

    fn check<T: FromValue + PartialEq + std::fmt::Debug>(value: Value, expected: Result<T, &str>) {
        let got = T::from_value(value.clone()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{value:?}");
    }

    #[test]
    fn conversions() {
        let text = |s: &str| Value::from(s);
        check(text("abc"), Ok(Bytes::from_static(b"abc")));
        check(Value::Integer(-7), Ok(Bytes::from_static(b"-7")));
        check::<Bytes>(Value::Null, Err("a reply of nil cannot be read as a string"));
        check(text("abc"), Ok(String::from("abc")));
        check(Value::Double(1.5), Ok(String::from("1.5")));
        check::<String>(
            Value::Bytes(Bytes::from_static(b"\xFF")),
            Err("a reply of a binary string cannot be read as UTF-8 text"),
        );
        check(text("42"), Ok(42i64));
        check(Value::Integer(-1), Ok(-1i64));
        check::<u64>(
            Value::Integer(-1),
            Err("a reply of an integer cannot be read as an integer that fits u64"),
        );
        check::<u16>(
            Value::Integer(70_000),
            Err("a reply of an integer cannot be read as an integer that fits u16"),
        );
        check(Value::Integer(1), Ok(true));
        check(text("false"), Ok(false));
        check::<bool>(
            Value::Integer(2),
            Err("a reply of an integer cannot be read as a boolean"),
        );
        check(Value::Integer(3), Ok(3.0f64));
        check::<Option<Bytes>>(Value::Null, Ok(None));
        check(text("v"), Ok(Some(Bytes::from_static(b"v"))));
        check(
            Value::Array(vec![text("a"), Value::Null]),
            Ok(vec![Some(Bytes::from_static(b"a")), None]),
        );
        check::<Vec<i64>>(Value::Null, Ok(vec![]));
        check(Value::Integer(5), Ok(vec![5i64]));
        check(
            Value::Map(vec![(text("f"), Value::Integer(1))]),
            Ok(vec![String::from("f"), String::from("1")]),
        );
        check(text("raw"), Ok(b"raw".to_vec()));
        check(Value::Array(vec![]), Ok(()));
        check(Value::Double(0.5), Ok(Value::Double(0.5)));
    }

    #[test]
    fn helpers() {
        let number = Value::from("12");
        assert_eq!(
            (number.as_i64(), number.as_u64(), number.as_f64()),
            (Some(12), Some(12), Some(12.0))
        );
        assert_eq!(Value::Integer(-3).as_u64(), None);
        assert_eq!(Value::Integer(4).into_bytes(), Some(Bytes::from_static(b"4")));
        assert_eq!(Value::Double(1.0).into_bytes(), None);
        assert_eq!(Value::Boolean(true).as_string().as_deref(), Some("true"));
        assert_eq!(Value::Bytes(Bytes::from_static(b"\xFF")).as_str(), None);
        assert_eq!(Value::Null.as_bytes(), None);
        assert!(Value::Null.is_null());
        assert_eq!(
            Value::Map(vec![(Value::from("k"), Value::Integer(1))]).into_array(),
            vec![Value::from("k"), Value::Integer(1)]
        );
        assert_eq!(Value::Integer(1).into_array(), vec![Value::Integer(1)]);
    }

    #[test]
    fn fred_replies_convert_without_losing_shape() {
        let mut map = std::collections::HashMap::new();
        map.insert(Key::from("field"), FredValue::Integer(2));
        let reply = FredValue::Array(vec![
            FredValue::Null,
            FredValue::Integer(1),
            FredValue::Double(0.25),
            FredValue::Boolean(false),
            FredValue::from("text"),
            FredValue::Bytes(Bytes::from_static(b"\x00\xFF")),
            FredValue::Queued,
            FredValue::Map(Map::try_from(map).unwrap_or_else(|e| panic!("{e}"))),
        ]);
        assert_eq!(
            from_fred(reply),
            Value::Array(vec![
                Value::Null,
                Value::Integer(1),
                Value::Double(0.25),
                Value::Boolean(false),
                Value::from("text"),
                Value::Bytes(Bytes::from_static(b"\x00\xFF")),
                Value::from("QUEUED"),
                Value::Map(vec![(Value::from("field"), Value::Integer(2))]),
            ])
        );
    }

    #[test]
    fn arguments_flatten_for_fred() {
        let args = to_fred(vec![
            "HSET".into(),
            Value::Bytes(Bytes::from_static(b"k")),
            Value::Map(vec![(Value::from("f"), Value::Integer(1))]),
            Value::Array(vec![Value::from("g"), Value::Double(2.5)]),
        ]);
        let text: Vec<String> = args.iter().filter_map(FredValue::as_string).collect();
        assert_eq!(text, ["HSET", "k", "f", "1", "g", "2.5"]);
        assert_eq!(fred_i64(&args[3]), Some(1));
        assert_eq!(fred_i64(&FredValue::Bytes(Bytes::from_static(b"250"))), Some(250));
    }

    #[test]
    fn strings_keep_their_buffer() {
        let shared = Bytes::from(vec![b'x'; 64]);
        let Value::Bytes(out) = from_fred(FredValue::Bytes(shared.clone())) else {
            panic!("a string stays a string");
        };
        assert_eq!(out.as_ptr(), shared.as_ptr(), "converted without copying");
    }
}
