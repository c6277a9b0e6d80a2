//! Host calls that read or write data: buffers, header maps, properties, shared data.

use std::ptr::{null, null_mut};

use proxy_wasm::types::{BufferType, Bytes, MapType, Status};

use crate::abi_wire::decode_pairs;
use crate::header_block::HeaderBlock;

use super::{check, take};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
}

/// Up to `max_size` bytes of a buffer from `start`; `None` when there is no such buffer.
pub(crate) fn get_buffer(
    buffer_type: BufferType,
    start: usize,
    max_size: usize,
) -> Result<Option<Bytes>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: the out-pointers are live locals; the host writes a pointer and a size.
    let code = unsafe {
        proxy_get_buffer_bytes(buffer_type as u32, start, max_size, &mut data, &mut size)
    };
    match check(code) {
        // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes.
        Ok(()) => Ok(unsafe { take(data, size) }),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Every pair of a header map; empty when the map is empty. A map the host cannot give
/// (`NotFound` in a callback without it, for instance) or a malformed one is an `Err`.
pub(crate) fn get_map_bytes(map_type: MapType) -> Result<Vec<(String, Bytes)>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `get_buffer`.
    let code = unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) };
    check(code)?;
    // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes.
    match unsafe { take(data, size) } {
        Some(bytes) => decode_pairs(&bytes).map_err(|_| Status::ParseFailure),
        None => Ok(Vec::new()),
    }
}

/// A header map kept serialized, checked once and read in place ([`HeaderBlock`]).
pub(crate) fn get_map_block(map_type: MapType) -> Result<HeaderBlock, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `get_buffer`.
    let code = unsafe { proxy_get_header_map_pairs(map_type as u32, &mut data, &mut size) };
    check(code)?;
    // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes.
    match unsafe { take(data, size) } {
        Some(bytes) => HeaderBlock::parse(bytes).map_err(|_| Status::ParseFailure),
        None => Ok(HeaderBlock::default()),
    }
}

/// One header's value: `None` if absent, `Some` (possibly empty) if present.
pub(crate) fn get_map_value_bytes(map_type: MapType, key: &str) -> Result<Option<Bytes>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: `key` is a live slice; the out-pointers are live locals.
    let code = unsafe {
        proxy_get_header_map_value(
            map_type as u32,
            key.as_ptr(),
            key.len(),
            &mut data,
            &mut size,
        )
    };
    match check(code) {
        // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes. The host
        // returns null for an empty value: the header is there, with no bytes.
        Ok(()) => Ok(Some(unsafe { take(data, size) }.unwrap_or_default())),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// Sets (replaces) a header, or removes it when `value` is `None`.
pub(crate) fn set_map_value_bytes(
    map_type: MapType,
    key: &str,
    value: Option<&[u8]>,
) -> Result<(), Status> {
    // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
    let code = unsafe {
        match value {
            Some(value) => proxy_replace_header_map_value(
                map_type as u32,
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
            ),
            None => proxy_remove_header_map_value(map_type as u32, key.as_ptr(), key.len()),
        }
    };
    check(code)
}

/// Adds a header beside any of the same name already in the map.
pub(crate) fn add_map_value_bytes(
    map_type: MapType,
    key: &str,
    value: &[u8],
) -> Result<(), Status> {
    // SAFETY: every pointer/length pair describes a live slice for the duration of the call.
    let code = unsafe {
        proxy_add_header_map_value(
            map_type as u32,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    check(code)
}

/// A property (`["source", "address"]`); `None` when it does not exist or has no value.
/// `path`: the parts joined by NUL bytes ([`crate::abi_wire::encode_path`]).
pub(crate) fn get_property(path: &[u8]) -> Result<Option<Bytes>, Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    // SAFETY: `path` is a live buffer; the out-pointers are live locals.
    let code = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    match check(code) {
        // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes.
        Ok(()) => Ok(unsafe { take(data, size) }),
        Err(Status::NotFound) => Ok(None),
        Err(status) => Err(status),
    }
}

/// A shared-data value and its CAS token: `(None, None)` for a key that does not exist,
/// `(None, Some(cas))` for a key whose value is empty.
pub(crate) fn get_shared_data(key: &str) -> Result<(Option<Bytes>, Option<u32>), Status> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: `key` is a live slice; the out-pointers are live locals.
    let code =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match check(code) {
        // SAFETY: on Ok, `data` is null or the host's allocation of `size` bytes.
        Ok(()) => Ok((unsafe { take(data, size) }, (cas != 0).then_some(cas))),
        Err(Status::NotFound) => Ok((None, None)),
        Err(status) => Err(status),
    }
}

/// Writes a shared-data value if `cas` still matches (`None`: unconditionally);
/// `Err(CasMismatch)` when another writer came first.
pub(crate) fn set_shared_data(
    key: &str,
    value: Option<&[u8]>,
    cas: Option<u32>,
) -> Result<(), Status> {
    // SAFETY: every pointer/length pair describes a live slice (or null, 0) for the call.
    let code = unsafe {
        proxy_set_shared_data(
            key.as_ptr(),
            key.len(),
            value.map_or(null(), <[u8]>::as_ptr),
            value.map_or(0, <[u8]>::len),
            cas.unwrap_or(0),
        )
    };
    check(code)
}
