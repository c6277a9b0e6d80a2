//! Metric names and the trait the host implements.
