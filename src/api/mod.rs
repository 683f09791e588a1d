//! The data API: DTOs shared by both sides, and the server functions the UI
//! calls. Every server function is a thin shell over the same service layer
//! the REST routes use (`crate::server::…`), so both APIs behave alike.
//! The account rules both sides check are in [`rules`].

pub mod auth;
pub mod chat;
pub mod dto;
pub mod error;
pub mod json;
pub mod rules;

pub use error::AppError;
