//! Genesys Cloud: OAuth tokens, the process-wide request budget, the API client and
//! its errors. Only real Platform API endpoints are used (the README lists each with the
//! permission it needs).

pub mod auth;
pub mod budget;
pub mod client;
pub mod contacts;
pub mod error;
pub mod model;
pub mod routing;
pub mod search;

pub use budget::Budget;
pub use client::{GenesysClient, GenesysConfig};
pub use error::{ErrorBody, GenesysError};
