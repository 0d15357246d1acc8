//! The CRM: what a lookup yields ([`model`]), the shared client with its cache, breaker and
//! metrics ([`client`]), and one module per CRM API behind [`backend::CrmBackend`]:
//! [`rest`] (the generic contract), [`salesforce`], [`dynamics`]. The field mapping is
//! [`fields`]; [`phone`] finds numbers stored in local formats; [`oauth`] holds the CRMs'
//! client-credentials tokens.

pub mod backend;
pub mod client;
pub mod dynamics;
pub mod fields;
pub mod model;
pub mod oauth;
pub mod phone;
pub mod rest;
pub mod salesforce;

pub use client::{CrmClient, CrmError};
pub use model::{CrmMatch, CrmOutcome, Customer};
