//! breaker: to be built.

pub mod window;
