//! JSON as the wasm client reads it: a small serde [`Deserializer`] for the
//! JSON serde_json writes on the server, and the server-function encoding
//! ([`Reply`]) and resource codec that use it.
//!
//! Why the client does not read JSON with serde_json: every serde_json
//! decoder can end in `serde_json::Error::invalid_type`, which formats the
//! unexpected value through serde's `Unexpected`. Its float arm links core's
//! float formatting, about 5 KiB of the compressed client (BENCHMARKS.md,
//! "Client size"), although no Charcha type holds a float. This reader
//! describes a wrong value by its kind instead of printing it, and refuses
//! fractional numbers where a value is wanted (a float in a field the client
//! does not know is skipped). For everything else it reads what serde_json
//! reads, and refuses what serde_json refuses: the tests check both on every
//! wire type.
//!
//! The server keeps serde_json: it writes every reply, and it reads every
//! request body, which comes from browsers and scripts it does not control.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, Unexpected, VariantAccess,
    Visitor,
};
use serde::{Deserialize, Serialize};

/// Why a JSON text could not be read into the wanted type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

/// A value's kind, for "invalid type" messages, without printing the value.
fn kind(unexpected: &Unexpected<'_>) -> &'static str {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) | Unexpected::Float(_) => "a number",
        Unexpected::Char(_) | Unexpected::Str(_) => "a string",
        Unexpected::Unit | Unexpected::Option => "null",
        Unexpected::Seq => "an array",
        Unexpected::Map => "an object",
        _ => "another kind of value",
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::new(message.to_string())
    }

    fn invalid_type(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::new(format!("invalid type: {}, expected {expected}", kind(&unexpected)))
    }

    fn invalid_value(unexpected: Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        Self::new(format!("invalid value: {}, expected {expected}", kind(&unexpected)))
    }
}

/// Reads `T` from JSON bytes: the whole input must be one JSON value.
pub fn from_slice<'de, T: Deserialize<'de>>(input: &'de [u8]) -> Result<T, Error> {
    let mut reader = Reader { input, pos: 0, depth: 0 };
    let value = T::deserialize(&mut reader)?;
    reader.skip_whitespace();
    if reader.pos < input.len() {
        return Err(reader.error("trailing characters"));
    }
    Ok(value)
}

/// As deep as arrays and objects may nest (serde_json's limit too), so a
/// hostile text cannot exhaust the stack.
const MAX_DEPTH: u32 = 128;

/// The name [`RawJson`] asks for, so the reader hands it the value's text.
const RAW_JSON: &str = "$charcha::api::json::RawJson";

/// One JSON value kept as its text, to be read later once its type is
/// known (a field whose type depends on a sibling). Only [`from_slice`]
/// can fill it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawJson<'a>(pub &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RawVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for RawVisitor<'a> {
            type Value = RawJson<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
                Ok(RawJson(text))
            }
        }
        deserializer.deserialize_newtype_struct(RAW_JSON, RawVisitor(std::marker::PhantomData))
    }
}

struct Reader<'de> {
    input: &'de [u8],
    pos: usize,
    depth: u32,
}

impl<'de> Reader<'de> {
    fn error(&self, what: &str) -> Error {
        Error::new(format!("{what} at byte {}", self.pos))
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8, what: &str) -> Result<(), Error> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), Error> {
        if self.input[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    /// Reads an array or object (or `{"Variant":…}`) with `read`, from its
    /// opening byte to its `close`, counting the depth.
    fn nested<T>(&mut self, close: u8, read: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1;
        let value = read(self)?;
        self.eat(close, if close == b']' { "expected `]`" } else { "expected `}`" })?;
        self.depth -= 1;
        Ok(value)
    }

    /// Reads a string, borrowed from the input when it has no escapes; the
    /// reader is at its opening quote.
    fn string(&mut self) -> Result<Cow<'de, str>, Error> {
        self.pos += 1;
        let start = self.pos;
        let mut owned: Option<String> = None;
        let mut run = start;
        loop {
            let Some(&byte) = self.input.get(self.pos) else {
                return Err(self.error("unterminated string"));
            };
            match byte {
                b'"' => {
                    let tail = self.utf8(run, self.pos)?;
                    self.pos += 1;
                    return Ok(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut text) => {
                            text.push_str(tail);
                            Cow::Owned(text)
                        }
                    });
                }
                b'\\' => {
                    let done = self.utf8(run, self.pos)?;
                    self.pos += 1;
                    let unescaped = self.escape()?;
                    let text = owned.get_or_insert_with(String::new);
                    text.push_str(done);
                    text.push(unescaped);
                    run = self.pos;
                }
                0x00..=0x1f => return Err(self.error("control character in a string")),
                _ => self.pos += 1,
            }
        }
    }

    fn utf8(&self, from: usize, to: usize) -> Result<&'de str, Error> {
        std::str::from_utf8(&self.input[from..to]).map_err(|_| self.error("invalid UTF-8 in a string"))
    }

    /// Reads one escape; the reader is just past its backslash.
    fn escape(&mut self) -> Result<char, Error> {
        let Some(&byte) = self.input.get(self.pos) else {
            return Err(self.error("unterminated string"));
        };
        self.pos += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                let code = match first {
                    0xD800..=0xDBFF => {
                        // A high surrogate: its low half must follow.
                        if !self.input[self.pos..].starts_with(b"\\u") {
                            return Err(self.error("lone surrogate in a string"));
                        }
                        self.pos += 2;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return Err(self.error("lone surrogate in a string"));
                        }
                        0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(self.error("lone surrogate in a string")),
                    other => other,
                };
                char::from_u32(code).ok_or_else(|| self.error("invalid escape"))?
            }
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self.input.get(self.pos..self.pos + 4).ok_or_else(|| self.error("invalid escape"))?;
        let mut value = 0;
        for &digit in digits {
            let nibble = (digit as char).to_digit(16).ok_or_else(|| self.error("invalid escape"))?;
            value = value * 16 + nibble;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Reads a number's text, checking JSON's grammar; returns whether it has
    /// a fraction or an exponent. The reader is at its first byte.
    fn number_text(&mut self) -> Result<(&'de str, bool), Error> {
        let start = self.pos;
        if self.input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.input.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        let mut fractional = false;
        if self.input.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            fractional = true;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.input.get(self.pos) {
            self.pos += 1;
            fractional = true;
            if let Some(b'+' | b'-') = self.input.get(self.pos) {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        // Only ASCII was consumed.
        Ok((self.utf8(start, self.pos)?, fractional))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Error> {
        match self.input.get(self.pos) {
            Some(b'0'..=b'9') => {
                self.digits();
                Ok(())
            }
            _ => Err(self.error("invalid number")),
        }
    }

    /// Moves to the next item of an array or object that `close` ends:
    /// `false` at its end (not consumed), `true` before another item (past
    /// the `,` that separates it from the one before).
    fn next_item(&mut self, first: &mut bool, close: u8) -> Result<bool, Error> {
        match self.peek() {
            Some(byte) if byte == close => return Ok(false),
            Some(b',') if !*first => self.pos += 1,
            _ if *first => {}
            _ => return Err(self.error("expected `,` or the end of the list")),
        }
        *first = false;
        Ok(true)
    }

    fn expect_key(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'"') => Ok(()),
            _ => Err(self.error("expected a string key")),
        }
    }

    /// Skips one value of any kind, checking its grammar.
    fn skip_value(&mut self) -> Result<(), Error> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number_text().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(open @ (b'[' | b'{')) => {
                let close = if open == b'[' { b']' } else { b'}' };
                self.nested(close, |reader| {
                    let mut first = true;
                    while reader.next_item(&mut first, close)? {
                        if open == b'{' {
                            reader.expect_key()?;
                            reader.string()?;
                            reader.eat(b':', "expected `:`")?;
                        }
                        reader.skip_value()?;
                    }
                    Ok(())
                })
            }
            _ => Err(self.error("expected a value")),
        }
    }
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'"') => match self.string()? {
                Cow::Borrowed(text) => visitor.visit_borrowed_str(text),
                Cow::Owned(text) => visitor.visit_string(text),
            },
            Some(b'-' | b'0'..=b'9') => {
                let (text, fractional) = self.number_text()?;
                if fractional {
                    return Err(self.error("fractional numbers are not read"));
                }
                let out_of_range = |_| self.error("number out of range");
                if text.starts_with('-') {
                    visitor.visit_i64(text.parse().map_err(out_of_range)?)
                } else {
                    visitor.visit_u64(text.parse().map_err(out_of_range)?)
                }
            }
            Some(b't') => {
                self.literal("true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.literal("false")?;
                visitor.visit_bool(false)
            }
            Some(b'n') => {
                self.literal("null")?;
                visitor.visit_unit()
            }
            Some(b'[') => self.nested(b']', |reader| visitor.visit_seq(Items { reader, first: true })),
            Some(b'{') => self.nested(b'}', |reader| visitor.visit_map(Items { reader, first: true })),
            _ => Err(self.error("expected a value")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(b'n') {
            self.literal("null")?;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// An enum is its variant's name (a unit variant), or an object with the
    /// variant's name as its one key (`{"Ok":…}`), as serde_json writes them.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.peek() {
            Some(b'"') => {
                let name = self.string()?.into_owned();
                visitor.visit_enum(IntoDeserializer::<'de, Error>::into_deserializer(name))
            }
            Some(b'{') => self.nested(b'}', |reader| {
                reader.expect_key()?;
                visitor.visit_enum(Variant { reader })
            }),
            _ => Err(self.error("expected a variant")),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        if name == RAW_JSON {
            self.skip_whitespace();
            let start = self.pos;
            self.skip_value()?;
            let text = self.utf8(start, self.pos)?;
            return visitor.visit_borrowed_str(text);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.skip_value()?;
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The items of an array, or the entries of an object; the reader is past
/// its `[` or `{`.
struct Items<'a, 'de> {
    reader: &'a mut Reader<'de>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        if !self.reader.next_item(&mut self.first, b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }
}

impl<'de> MapAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        if !self.reader.next_item(&mut self.first, b'}')? {
            return Ok(None);
        }
        self.reader.expect_key()?;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        self.reader.eat(b':', "expected `:`")?;
        seed.deserialize(&mut *self.reader)
    }
}

/// The variant of an enum written as `{"Name":…}`; the reader is at the
/// name.
struct Variant<'a, 'de> {
    reader: &'a mut Reader<'de>,
}

impl<'de> EnumAccess<'de> for Variant<'_, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let variant = seed.deserialize(&mut *self.reader)?;
        self.reader.eat(b':', "expected `:`")?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        <()>::deserialize(&mut *self.reader)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.reader)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.reader.deserialize_any(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        self.reader.deserialize_any(visitor)
    }
}

/// The encoding of server functions' replies (and of their errors): JSON
/// written by serde_json on the server and read by [`from_slice`] in the
/// client. Declared with `output = Reply`.
pub struct ReplyEncoding;

/// `POST`, answered with [`ReplyEncoding`].
pub type Reply = leptos::server_fn::codec::Post<ReplyEncoding>;

impl leptos::server_fn::ContentType for ReplyEncoding {
    const CONTENT_TYPE: &'static str = "application/json";
}

impl leptos::server_fn::FormatType for ReplyEncoding {
    const FORMAT_TYPE: leptos::server_fn::Format = leptos::server_fn::Format::Text;
}

impl<T: Serialize> leptos::server_fn::Encodes<T> for ReplyEncoding {
    type Error = serde_json::Error;

    fn encode(value: &T) -> Result<leptos::server_fn::Bytes, Self::Error> {
        serde_json::to_vec(value).map(leptos::server_fn::Bytes::from)
    }
}

impl<T: de::DeserializeOwned> leptos::server_fn::Decodes<T> for ReplyEncoding {
    type Error = Error;

    fn decode(bytes: leptos::server_fn::Bytes) -> Result<T, Self::Error> {
        from_slice(&bytes)
    }
}

/// The same, as the codec of a resource the server renders into the page.
impl<T: Serialize> leptos::server::codee::Encoder<T> for ReplyEncoding {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, Self::Error> {
        serde_json::to_string(value)
    }
}

impl<T: de::DeserializeOwned> leptos::server::codee::Decoder<T> for ReplyEncoding {
    type Error = Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, Self::Error> {
        from_slice(text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::api::AppError;
    use crate::api::dto::{ChatMessage, ConversationPage, GroupRole, User};
    use crate::protocol::ErrorCode;

    /// Both readers accept `json` and agree on the value.
    fn agree<T: DeserializeOwned + PartialEq + fmt::Debug>(json: &str) -> T {
        let ours: T = from_slice(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
        let theirs: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("serde_json: {json}: {e}"));
        assert_eq!(ours, theirs, "{json}");
        ours
    }

    /// Both readers refuse `json`.
    fn both_refuse<T: DeserializeOwned + fmt::Debug>(json: &str) {
        assert!(from_slice::<T>(json.as_bytes()).is_err(), "accepted {json}");
        assert!(serde_json::from_str::<T>(json).is_err(), "serde_json accepted {json}");
    }

    #[test]
    fn strings_read_as_serde_json_reads_them() {
        for json in [
            r#""""#,
            r#""plain""#,
            r#""quote \" backslash \\ slash \/ \b\f\n\r\t""#,
            r#""\u00e9 \u20AC \ud83d\ude00 é €""#,
            r#""emoji 😀 and \u0000 nul""#,
            "  \"padded\"\n",
        ] {
            agree::<String>(json);
        }
        for json in [
            r#""unterminated"#,
            r#""lone \ud83d surrogate""#,
            r#""low \ude00 first""#,
            r#""bad \x escape""#,
            r#""short \u12""#,
            "\"raw \n newline\"",
            r#""a" "b""#,
            r#"'single'"#,
        ] {
            both_refuse::<String>(json);
        }
        assert!(from_slice::<String>(b"\"\xff\"").is_err(), "invalid UTF-8");
    }

    #[test]
    fn numbers_are_integers_in_range() {
        assert_eq!(agree::<u64>("18446744073709551615"), u64::MAX);
        assert_eq!(agree::<i64>("-9223372036854775808"), i64::MIN);
        assert_eq!(agree::<u32>("0"), 0);
        assert_eq!(agree::<Option<u32>>("null"), None);
        for json in ["4294967296", "-1", "01", "1.", "-", "+1", "1e", "18446744073709551616"] {
            both_refuse::<u32>(json);
        }
        // No Charcha type holds a float, and the client does not read them…
        assert!(from_slice::<u64>(b"1.5").is_err());
        assert!(from_slice::<u64>(b"1e3").is_err());
        // …except to skip one in a field it does not know.
        let user = r#"{"_id":"u","email":"a@b.c","full_name":"A","score":-1.25e-3,"profile_picture":"","bio":"","created_at":"t"}"#;
        assert_eq!(from_slice::<User>(user.as_bytes()).map(|u| u.id), Ok("u".to_string()));
    }

    #[test]
    fn every_wire_type_reads_as_with_serde_json() {
        let message = ChatMessage {
            id: "01J00000000000000000000000".into(),
            conversation_id: "grp:01J".into(),
            sender_id: "a".into(),
            recipient_id: "grp:01J".into(),
            text: "hé \"quoted\"\n\u{1F600} **bold** <b>".into(),
            image: Some("/api/media/x".into()),
            created_at: "2026-01-01T00:00:00.000Z".into(),
            client_msg_id: Some("c1".into()),
            edited_at: Some("2026-01-01T00:01:00.000Z".into()),
            deleted: true,
            reply_to: Some("01J0".into()),
        };
        let json = serde_json::to_string(&message).expect("json");
        assert_eq!(agree::<ChatMessage>(&json), message);
        let pretty = serde_json::to_string_pretty(&message).expect("json");
        assert_eq!(agree::<ChatMessage>(&pretty), message);

        let mut errors = BTreeMap::new();
        errors.insert("email".to_string(), vec!["taken".to_string(), "too long".to_string()]);
        let error = AppError { retry_after: Some(3), ..AppError::validation(errors) };
        let json = serde_json::to_string(&error).expect("json");
        assert_eq!(agree::<AppError>(&json), error);
        assert_eq!(agree::<AppError>(r#"{"message":"x"}"#).status, 500, "the default status");

        // The session resource: a `Result` travels as `{"Ok":…}` / `{"Err":…}`.
        let user = User {
            id: "u".into(),
            email: "a@b.c".into(),
            full_name: "Ada".into(),
            profile_picture: String::new(),
            bio: "\u{1F600}".into(),
            created_at: "t".into(),
        };
        for session in [Ok(Some(user)), Ok(None), Err(AppError::unauthorized("no"))] {
            let json = serde_json::to_string(&session).expect("json");
            assert_eq!(agree::<Result<Option<User>, AppError>>(&json), session);
        }
        both_refuse::<Result<u32, u32>>(r#"{"Ok":1,"Err":2}"#);
        both_refuse::<Result<u32, u32>>(r#"{"Maybe":1}"#);
        both_refuse::<Result<u32, u32>>(r#"{}"#);

        assert_eq!(agree::<ErrorCode>(r#""rate_limited""#), ErrorCode::RateLimited);
        assert_eq!(agree::<ErrorCode>(r#""from_the_future""#), ErrorCode::Unknown);
        assert_eq!(agree::<GroupRole>(r#""admin""#), GroupRole::Admin);
        both_refuse::<GroupRole>(r#""owner""#);
        both_refuse::<GroupRole>("1");

        let page = r#"{"conversations":[],"next_cursor":null}"#;
        let ours: ConversationPage = from_slice(page.as_bytes()).expect("page");
        let theirs: ConversationPage = serde_json::from_str(page).expect("page");
        assert_eq!(serde_json::to_string(&ours).ok(), serde_json::to_string(&theirs).ok());
        assert_eq!(agree::<Vec<Option<bool>>>(" [ true , null,false ] "), vec![Some(true), None, Some(false)]);
    }

    #[test]
    fn bad_documents_are_refused_with_a_reason() {
        for json in [
            "",
            "   ",
            "{",
            r#"{"_id":"u",}"#,
            r#"{"_id" "u"}"#,
            r#"{"_id":"u""email":"e"}"#,
            r#"{_id:"u"}"#,
            r#"{"_id":"u","email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t"} x"#,
            r#"{"_id":"v","_id":"u","email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t"}"#,
            r#"{"_id":1,"email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t"}"#,
            r#"{"email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t"}"#,
            r#"{"_id":"u","email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t","x":[1,]}"#,
            r#"{"_id":"u","email":"e","full_name":"A","profile_picture":"","bio":"","created_at":"t","x":tru}"#,
            "[1,2]",
        ] {
            both_refuse::<User>(json);
        }
        let error = from_slice::<User>(br#"{"_id":1}"#).expect_err("a number for a string");
        assert_eq!(error.to_string(), "invalid type: a number, expected a string");
        let deep = "[".repeat(200) + &"]".repeat(200);
        both_refuse::<serde_json::Value>(&deep);
        assert!(from_slice::<serde::de::IgnoredAny>(deep.as_bytes()).is_err(), "skipping counts depth too");
        let unknown_deep = format!(r#"{{"_id":"u","x":{deep}}}"#);
        assert!(from_slice::<User>(unknown_deep.as_bytes()).is_err(), "depth counts in skipped fields too");
    }

    #[test]
    fn raw_json_keeps_a_value_as_its_text() {
        #[derive(Deserialize)]
        struct Frame<'a> {
            #[serde(borrow)]
            value: RawJson<'a>,
            after: u32,
        }
        let frame: Frame = from_slice(br#"{"value": {"a":[1,"}"],"b":null} ,"after":2}"#).expect("frame");
        assert_eq!(frame.value, RawJson(r#"{"a":[1,"}"],"b":null}"#));
        assert_eq!(frame.after, 2);
        assert!(from_slice::<Frame>(br#"{"value":[1,"after":2}"#).is_err());
    }
}
