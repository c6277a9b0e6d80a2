//! What the fallbacks and the stale cache need from a request once its callback is over:
//! a copy of its head, its cache key, its body (callout mode), and the upstream answer being
//! captured for the cache as it passes (router mode).

use crate::config::{ClientIpConfig, UpstreamConfig};
use crate::idempotency::outcome::AnswerParts;
use crate::idempotency::response::StoredResponse;
use crate::request::saved::SavedRequest;
use crate::request::RequestAttributes;
use crate::store::hash::KeyHasher;
use crate::store::SharedStore;
use crate::time::UnixNanos;

use super::cache::StaleCache;
use super::cacheable::{cache_key, check_body, check_headers, VaryValues};

/// A request's copy for its fallbacks and its upstream's stale cache.
#[derive(Debug)]
pub struct KeptRequest {
    /// The request; its body (for the secondary cluster and the queue) is there in callout
    /// mode only, router mode never buffers it.
    pub saved: SavedRequest,
    /// The request has a body (its headers did not end the stream).
    pub has_body: bool,
    /// The stale-cache key, when the upstream has a cache.
    pub cache_key: Option<Vec<u8>>,
    /// Router mode: the upstream's answer being captured for the stale cache.
    capture: Option<StoredResponse>,
}

impl KeptRequest {
    /// The copy a request to `upstream` needs, or `None` when it has no fallback and no cache.
    pub fn of(
        upstream: &UpstreamConfig,
        cache: Option<&StaleCache>,
        client_ip: &ClientIpConfig,
        req: &dyn RequestAttributes,
        end_of_stream: bool,
    ) -> Option<Self> {
        if upstream.fallback.is_empty() && upstream.cache.is_none() {
            return None;
        }
        let cache_key = match (&upstream.cache, cache) {
            (Some(cfg), Some(_)) => {
                let mut key = Vec::new();
                cache_key(req, &cfg.key, client_ip, &mut key);
                Some(key)
            }
            _ => None,
        };
        Some(Self {
            saved: SavedRequest::of(req),
            has_body: !end_of_stream,
            cache_key,
            capture: None,
        })
    }

    /// An upstream answer went to the client: keep it in `cache` if the rules allow.
    pub fn keep_in_cache(
        &self,
        cache: &StaleCache,
        max_body_bytes: u64,
        hasher: &KeyHasher,
        store: &dyn SharedStore,
        (status, headers, body): AnswerParts<'_>,
        now: UnixNanos,
    ) {
        let Some(key) = &self.cache_key else { return };
        if check_headers(&self.saved, status, headers).is_err()
            || check_body(body.len() as u64, max_body_bytes).is_err()
        {
            return;
        }
        let Ok(vary) = VaryValues::from_request(headers, &self.saved) else {
            return;
        };
        let resp = StoredResponse {
            status,
            headers: headers.to_vec(),
            body: body.to_vec(),
        };
        if let Err(e) = cache.store_response(store, hasher, key, &vary, &resp, now) {
            log::debug!("levee: answer not cached: {e:?}");
        }
    }

    /// Router mode: starts capturing the upstream's answer when the cache may keep it.
    pub fn capture_if_cacheable(&mut self, status: u16, headers: &[(String, String)]) {
        if self.cache_key.is_some() && check_headers(&self.saved, status, headers).is_ok() {
            self.capture = Some(StoredResponse {
                status,
                headers: headers.to_vec(),
                body: Vec::new(),
            });
        }
    }

    pub fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Stops capturing (a fallback replaced the answer).
    pub fn drop_capture(&mut self) {
        self.capture = None;
    }

    /// A chunk of the captured answer's body; past `max` bytes the capture is dropped.
    pub fn capture_chunk(&mut self, chunk: &[u8], max: u64) {
        if let Some(c) = self.capture.as_mut() {
            if (c.body.len() + chunk.len()) as u64 <= max {
                c.body.extend_from_slice(chunk);
            } else {
                self.capture = None;
            }
        }
    }

    /// The captured answer, once its body is complete.
    pub fn take_capture(&mut self) -> Option<StoredResponse> {
        self.capture.take()
    }
}
