//! retry: to be built.
