//! The CRM: what a lookup yields ([`model`]) and the REST adapter that performs it
//! ([`client`]).

pub mod client;
pub mod model;

pub use client::{CrmClient, CustomerDirectory};
pub use model::{CrmMatch, CrmOutcome, Customer};
