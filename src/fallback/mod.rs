//! fallback: to be built.
