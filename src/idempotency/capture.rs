//! The upstream's answer, captured for the key's record as it passes to the client: its
//! status and headers, then its body up to `max_body_bytes` (past that, the status only).

use super::machine::Outcome;
use super::response::StoredResponse;

/// An answer being captured (or none yet).
#[derive(Debug, Default)]
pub struct Capture {
    answer: Option<StoredResponse>,
    /// The body passed `max_body_bytes`: only the status is kept.
    overflow: bool,
}

impl Capture {
    /// Starts capturing `answer` (its body may follow in chunks).
    pub fn start(&mut self, answer: StoredResponse) {
        self.answer = Some(answer);
    }

    pub fn is_active(&self) -> bool {
        self.answer.is_some()
    }

    /// A chunk of the answer's body; past `max` bytes only the status is kept.
    pub fn chunk(&mut self, chunk: &[u8], max: u64) {
        if let Some(c) = self.answer.as_mut() {
            if !self.overflow && (c.body.len() + chunk.len()) as u64 <= max {
                c.body.extend_from_slice(chunk);
            } else {
                self.overflow = true;
                c.body = Vec::new();
            }
        }
    }

    /// How the record completes once the answer is whole: stored, or too large.
    pub fn outcome(&self) -> Option<Outcome> {
        let status = self.answer.as_ref()?.status;
        Some(if self.overflow {
            Outcome::TooLarge { status }
        } else {
            Outcome::Stored { status, body: None }
        })
    }

    /// The captured answer, which the capture no longer holds.
    pub fn take(&mut self) -> Option<StoredResponse> {
        self.answer.take()
    }
}
