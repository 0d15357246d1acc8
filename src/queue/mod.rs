//! RabbitMQ: connections, the topology, confirmed publishing, our headers, reading and
//! settling deliveries, dead letters and the outcome events.

pub mod connection;
pub mod dead_letter;
pub mod depth;
pub mod events;
pub mod headers;
pub mod inbound;
pub mod publisher;
pub mod topology;

pub use connection::{Broker, BrokerError};
pub use publisher::{PublishError, Publisher};
pub use topology::Topology;
