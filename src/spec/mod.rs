//! Loading and validating cloud.yml and meltano.yml.

pub mod model;
