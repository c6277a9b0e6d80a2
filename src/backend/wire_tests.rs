//! Unit tests of the wire format: varints, every wire type, and malformed input as errors.

use super::wire::*;

fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, DecodeError> {
    let mut out = Vec::new();
    for_each_field("test", buf, |f| {
        out.push((f.number, f.value));
        Ok(())
    })?;
    Ok(out)
}

#[test]
fn varints_use_the_protobuf_encoding() {
    let mut buf = Vec::new();
    put_varint(&mut buf, 300);
    assert_eq!(buf, [0xac, 0x02]);
    buf.clear();
    put_i64(&mut buf, 1, -1);
    assert_eq!(buf.len(), 11, "tag + ten bytes for a negative int64");
    assert_eq!(fields(&buf).unwrap(), [(1, Value::Varint(u64::MAX))]);
}

#[test]
fn every_wire_type_is_read_and_unknown_fields_are_returned_for_skipping() {
    let mut buf = Vec::new();
    put_u64(&mut buf, 1, 7);
    put_tag(&mut buf, 2, FIXED64);
    buf.extend_from_slice(&9u64.to_le_bytes());
    put_bytes(&mut buf, 3, b"abc");
    put_tag(&mut buf, 4, FIXED32);
    buf.extend_from_slice(&5u32.to_le_bytes());
    assert_eq!(
        fields(&buf).unwrap(),
        [
            (1, Value::Varint(7)),
            (2, Value::Fixed64(9)),
            (3, Value::Len(b"abc")),
            (4, Value::Fixed32(5))
        ]
    );
}

#[test]
fn malformed_inputs_are_errors() {
    assert_eq!(fields(&[0x08]), Err(DecodeError::Truncated));
    assert_eq!(fields(&[0x08, 0x80]), Err(DecodeError::Truncated));
    assert_eq!(fields(&[0x0a, 0x05, 1, 2]), Err(DecodeError::Truncated));
    assert_eq!(fields(&[0x00, 0x01]), Err(DecodeError::BadFieldNumber));
    assert_eq!(fields(&[0x0b]), Err(DecodeError::UnsupportedWireType(3)));
    let eleven = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    assert_eq!(fields(&eleven), Err(DecodeError::VarintOverflow));
    let huge_len = [
        0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    assert_eq!(fields(&huge_len), Err(DecodeError::Truncated));
}
