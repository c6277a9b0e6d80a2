//! The names of the idempotency layer's plain shared-data keys: one stored answer per record
//! slot, and the byte counter that bounds them all. Both the layer (which pre-creates them)
//! and the answer store (which writes them) name them from here.

/// The stored-bytes counter: bytes held by stored answers, bounded by `max_stored_bytes`.
pub const BUDGET_KEY: &str = "levee:v1:idem:budget";
/// Prefix of the per-slot answer keys.
pub const BODY_PREFIX: &str = "levee:v1:idem:body:";

/// The key of the answer stored for record slot `slot`.
pub fn body_key(slot: u32) -> String {
    format!("{BODY_PREFIX}{slot}")
}
