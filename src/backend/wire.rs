//! The protobuf wire format, just enough of it for the few messages levee exchanges with its
//! remote engines.
//!
//! Why hand-written: a generated-code crate would pull a runtime and reflection tables into a
//! wasm module that needs a dozen messages. The format itself is small: each field is a tag
//! (`field number << 3 | wire type`) followed by a varint, a fixed 64- or 32-bit value, or a
//! length-delimited byte string (strings, bytes, nested messages).
//!
//! Decoding is total: the bytes come from the network, so every malformed input (truncated
//! varint or length, a varint longer than ten bytes, field number zero, a group or reserved
//! wire type, invalid UTF-8 in a string field, a known field with the wrong wire type) is a
//! [`DecodeError`], never a panic or an out-of-bounds read. Unknown fields are skipped, as the
//! protobuf rules require, so newer servers that add fields stay readable.
//!
//! Encoding follows proto3 conventions so that the bytes match the official encoders': fields in
//! field-number order, scalars equal to their default left out, nested messages and members of
//! a `oneof` always written when present (a `oneof` holding `0` is still "set").

use std::fmt;

/// Wire type of a varint field (`int32`, `int64`, `uint32`, `uint64`, `bool`, enums).
pub const VARINT: u8 = 0;
/// Wire type of a 64-bit little-endian field (`fixed64`, `sfixed64`, `double`).
pub const FIXED64: u8 = 1;
/// Wire type of a length-delimited field (`string`, `bytes`, messages, packed repeated).
pub const LEN: u8 = 2;
/// Wire type of a 32-bit little-endian field (`fixed32`, `sfixed32`, `float`).
pub const FIXED32: u8 = 5;

/// The largest field number protobuf allows.
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Why bytes could not be read as the expected message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a tag, a value or a length-delimited field.
    Truncated,
    /// A varint ran past ten bytes or past 64 bits.
    VarintOverflow,
    /// A tag with field number zero or above the protobuf maximum.
    BadFieldNumber,
    /// Wire type 3, 4 (groups), 6 or 7.
    UnsupportedWireType(u8),
    /// A field this codec knows arrived with another wire type.
    WrongWireType {
        /// The message being read.
        message: &'static str,
        /// The field number.
        field: u32,
    },
    /// A `string` field that is not UTF-8.
    InvalidUtf8 {
        /// The message being read.
        message: &'static str,
        /// The field number.
        field: u32,
    },
    /// A message whose required `oneof` carried none of the members this codec reads.
    MissingOneof(&'static str),
    /// An enum field with a number this codec does not know, where no fallback makes sense.
    UnknownEnum {
        /// The message being read.
        message: &'static str,
        /// The field number.
        field: u32,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "protobuf input ends inside a field"),
            DecodeError::VarintOverflow => write!(f, "protobuf varint longer than 64 bits"),
            DecodeError::BadFieldNumber => write!(f, "protobuf field number out of range"),
            DecodeError::UnsupportedWireType(t) => {
                write!(f, "protobuf wire type {t} is not supported")
            }
            DecodeError::WrongWireType { message, field } => {
                write!(f, "field {field} of {message} has the wrong wire type")
            }
            DecodeError::InvalidUtf8 { message, field } => {
                write!(f, "field {field} of {message} is not valid UTF-8")
            }
            DecodeError::MissingOneof(message) => {
                write!(f, "{message} carries no known member of its oneof")
            }
            DecodeError::UnknownEnum { message, field } => {
                write!(f, "field {field} of {message} holds an unknown enum value")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// A message this codec can write and read.
pub trait Message: Sized {
    /// The protobuf full name, used in errors.
    const NAME: &'static str;

    /// Appends the message's fields (without a length prefix) to `buf`.
    fn encode_to(&self, buf: &mut Vec<u8>);

    /// Reads a message from exactly `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;

    /// The serialized message.
    fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode_to(&mut buf);
        buf
    }
}

/// Appends `v` as a base-128 varint.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends the tag of `field` with wire type `wire_type`.
pub fn put_tag(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, (u64::from(field) << 3) | u64::from(wire_type));
}

/// A varint field, left out when zero (proto3 default).
pub fn put_u64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_u64_always(buf, field, v);
    }
}

/// A varint field written even when zero (a `oneof` member or a wrapper's value).
pub fn put_u64_always(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, VARINT);
    put_varint(buf, v);
}

/// An `int64` field: negative values take ten bytes (two's complement), as protobuf says.
pub fn put_i64(buf: &mut Vec<u8>, field: u32, v: i64) {
    put_u64(buf, field, v as u64);
}

/// An `int32` or enum field: sign-extended to 64 bits, as protobuf says.
pub fn put_i32(buf: &mut Vec<u8>, field: u32, v: i32) {
    put_u64(buf, field, i64::from(v) as u64);
}

/// A `bool` field, left out when false.
pub fn put_bool(buf: &mut Vec<u8>, field: u32, v: bool) {
    put_u64(buf, field, u64::from(v));
}

/// A `bytes` or `string` field, left out when empty.
pub fn put_bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    if !v.is_empty() {
        put_bytes_always(buf, field, v);
    }
}

/// A length-delimited field written even when empty.
pub fn put_bytes_always(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_tag(buf, field, LEN);
    put_varint(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

/// A nested message (always written: presence is meaningful for messages).
pub fn put_message<M: Message>(buf: &mut Vec<u8>, field: u32, m: &M) {
    put_bytes_always(buf, field, &m.encode());
}

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: the bytes after the length.
    Len(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

/// A field read from a message: its number and value, with typed accessors that check the
/// wire type against what the message expects.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    /// The message being read (for errors).
    pub message: &'static str,
    /// The field number.
    pub number: u32,
    /// The raw value.
    pub value: Value<'a>,
}

impl<'a> Field<'a> {
    fn wrong(&self) -> DecodeError {
        DecodeError::WrongWireType {
            message: self.message,
            field: self.number,
        }
    }

    /// A varint field as `u64`.
    pub fn u64(&self) -> Result<u64, DecodeError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong()),
        }
    }

    /// An `int64` field.
    pub fn i64(&self) -> Result<i64, DecodeError> {
        self.u64().map(|v| v as i64)
    }

    /// An `int32` or enum field (the low 32 bits, as protobuf parsers do).
    pub fn i32(&self) -> Result<i32, DecodeError> {
        self.u64().map(|v| v as i32)
    }

    /// A `uint32` field (the low 32 bits, as protobuf parsers do).
    pub fn u32(&self) -> Result<u32, DecodeError> {
        self.u64().map(|v| v as u32)
    }

    /// A `bool` field.
    pub fn bool(&self) -> Result<bool, DecodeError> {
        self.u64().map(|v| v != 0)
    }

    /// A length-delimited field's bytes.
    pub fn bytes(&self) -> Result<&'a [u8], DecodeError> {
        match self.value {
            Value::Len(b) => Ok(b),
            _ => Err(self.wrong()),
        }
    }

    /// A `string` field.
    pub fn string(&self) -> Result<String, DecodeError> {
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| DecodeError::InvalidUtf8 {
                message: self.message,
                field: self.number,
            })
    }

    /// The error for an enum value this codec does not know.
    pub fn unknown_enum(&self) -> DecodeError {
        DecodeError::UnknownEnum {
            message: self.message,
            field: self.number,
        }
    }

    /// A nested message.
    pub fn message<M: Message>(&self) -> Result<M, DecodeError> {
        M::decode(self.bytes()?)
    }
}

/// Reads the fields of one message in order.
pub struct Reader<'a> {
    message: &'static str,
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the serialized `message`.
    pub fn new(message: &'static str, buf: &'a [u8]) -> Reader<'a> {
        Reader {
            message,
            buf,
            pos: 0,
        }
    }

    /// The next field, `None` at the end of the input.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Field<'a>>, DecodeError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > MAX_FIELD {
            return Err(DecodeError::BadFieldNumber);
        }
        let value = match (tag & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => Value::Fixed64(u64::from_le_bytes(self.array::<8>()?)),
            FIXED32 => Value::Fixed32(u32::from_le_bytes(self.array::<4>()?)),
            LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
                Value::Len(self.take(len)?)
            }
            other => return Err(DecodeError::UnsupportedWireType(other)),
        };
        Ok(Some(Field {
            message: self.message,
            number: number as u32,
            value,
        }))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may carry only the 64th bit.
            if i == 9 && bits > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::VarintOverflow)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(len).ok_or(DecodeError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// Reads every field of `buf` as `message`, handing each to `f`; unknown fields are the
/// caller's to ignore.
pub fn for_each_field<'a>(
    message: &'static str,
    buf: &'a [u8],
    mut f: impl FnMut(Field<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let mut reader = Reader::new(message, buf);
    while let Some(field) = reader.next()? {
        f(field)?;
    }
    Ok(())
}
