//! CoDiff Studio: multi-modal face generation and editing with Collaborative Diffusion.
//!
//! Layers, from the bottom: [`data`] (masks, the synthetic face world),
//! [`model`] (the original networks and their checkpoints), [`diffusion`]
//! (schedule, DDIM and the collaborative combination, no I/O), [`pipeline`]
//! (long-running jobs that report progress) and [`app`] (the egui studio).

pub mod app;
pub mod cli;
pub mod data;
pub mod diffusion;
pub mod kernels;
pub mod model;
pub mod pipeline;
