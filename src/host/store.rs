//! Envoy shared data as a [`SharedStore`].

use proxy_wasm::types::Status;

use crate::store::{Cas, ReadError, SharedStore, Versioned, WriteError};

use super::abi;

/// The plugin's shared data (one map per `vm_id`, shared by every worker VM).
pub(crate) struct EnvoyStore;

impl SharedStore for EnvoyStore {
    fn get(&self, key: &str) -> Result<Option<Versioned>, ReadError> {
        match abi::get_shared_data(key) {
            Ok((value, Some(cas))) => Ok(Some(Versioned {
                value: value.unwrap_or_default(),
                cas,
            })),
            Ok((_, None)) => Ok(None),
            Err(Status::NotFound) => Ok(None),
            Err(_) => Err(ReadError),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<Cas>) -> Result<(), WriteError> {
        match abi::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(WriteError::CasMismatch),
            Err(_) => Err(WriteError::Host),
        }
    }
}
