//! prechat-enricher: enriches Genesys Cloud Web Messaging conversations with
//! pre-chat survey answers and CRM data, through RabbitMQ.

pub mod cli;
pub mod config;
pub mod crm;
pub mod dlq;
pub mod genesys;
pub mod ingest;
pub mod merge;
pub mod metrics;
pub mod privacy;
pub mod queue;
pub mod resolver;
pub mod shutdown;
pub mod startup;
pub mod submission;
pub mod telemetry;
pub mod trace;
pub mod worker;
