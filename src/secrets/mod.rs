//! (not yet built)
pub mod decrypt;
