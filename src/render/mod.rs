//! Rendering plans and tables for people and machines: text, JSON, Markdown, GitHub.

pub mod github;
pub mod plan;
pub mod style;
pub mod table;
