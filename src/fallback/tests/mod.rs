//! Tests of the fallback layer, one file per idea.

mod cache;
mod cacheable;
mod chain;
mod deliveries;
mod queue;
