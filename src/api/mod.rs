//! The Meltano Cloud API: wire types shared by the server and the client, and the client.

pub mod client;
pub mod types;

pub use types::*;
