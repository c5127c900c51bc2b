//! Jobs that run for a while and report as they go. Each takes a request, a
//! cancel flag and an event sink, and returns a result.

pub mod bench;
pub mod edit;
pub mod evaluate;
pub mod generate;
pub mod train;
