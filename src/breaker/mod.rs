//! breaker: to be built.
