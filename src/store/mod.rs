//! (not yet built)

pub mod runs;
