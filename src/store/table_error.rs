//! Why a slot-table operation did not happen — its own file to keep `slots.rs` about
//! placement. "Rejected" outcomes (`Full`) are kept apart from failures (`Store`) and from
//! contention (`Conflict` for one lost race, `Contended` when retries ran out).

use super::cas::{Exhausted, StoreFault, UpdateError};

/// Why a table operation did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// The bucket key does not exist: the table was not created at configure time.
    Missing,
    /// Every way holds a live entry that the table's eviction policy may not replace.
    Full,
    /// One commit lost a CAS race: look up again.
    Conflict,
    /// Every attempt lost a CAS race.
    Contended,
    StateTooLarge {
        len: usize,
        max: usize,
    },
    Store(StoreFault),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Missing => {
                f.write_str("slot table key missing (tables are created at configure time)")
            }
            TableError::Full => f.write_str("no free slot: every candidate holds a live entry"),
            TableError::Conflict => f.write_str("slot changed since it was read"),
            TableError::Contended => f.write_str("slot too contended: CAS retries exhausted"),
            TableError::StateTooLarge { len, max } => {
                write!(f, "slot state of {len} bytes exceeds {max}")
            }
            TableError::Store(fault) => fault.fmt(f),
        }
    }
}

impl std::error::Error for TableError {}

impl From<UpdateError> for TableError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Missing => TableError::Missing,
            UpdateError::Contended => TableError::Contended,
            UpdateError::Store(fault) => TableError::Store(fault),
        }
    }
}

impl From<Exhausted> for TableError {
    fn from(_: Exhausted) -> Self {
        TableError::Contended
    }
}
