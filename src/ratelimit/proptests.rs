//! Property tests for the rate-limit algorithms (see below).
