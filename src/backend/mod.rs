//! Remote engines that make levee's state mesh-wide: etcd for idempotency records and an
//! Envoy rate limit service for global limits. This folder holds their message codecs (plain
//! Rust, no `proxy_wasm`), so the codecs are tested natively against the official protos.
//!
//! How a message travels: the host's `dispatch_grpc_call(cluster, service, method,
//! initial_metadata, message, timeout)` takes the serialized protobuf message alone; Envoy's
//! gRPC client adds the five-byte length prefix, the HTTP/2 framing and the `grpc-status`
//! trailer handling, and hands the callback the answer's message bytes (again without a
//! prefix) or a gRPC status. So no gRPC framing lives here: [`wire`] encodes and decodes the
//! message bytes themselves, [`etcd`] and [`rls`] the messages.

pub mod call;
pub mod etcd;
pub mod rls;
pub mod wire;

#[cfg(test)]
mod codec_tests;
#[cfg(test)]
mod wire_tests;

pub use wire::{DecodeError, Message};
