//! Failures at the edges of the service, each against loopback stand-ins: a login host that
//! accepts connections and never answers, a cluster node that never completes the AMQP
//! handshake, a broker reached over IPv6 only, and queues declared with other arguments
//! than the configuration's.
//!
//! - `token` — the token grant ends within its timeout, shares one grant, waits out a 429;
//! - `failover` — a first node of a cluster URL list that drops SYNs, or accepts and never
//!   answers, does not keep the others from being tried;
//! - `ipv6` — an AMQP URL with an IPv6 literal connects to that address;
//! - `drift` — a queue declared with another `x-delivery-limit` stops the start naming it;
//! - `lost_channel` — a worker whose consuming channel is lost starts no further write once
//!   another replica has the message.

mod drift;
mod failover;
mod ipv6;
mod lost_channel;
mod rate_limit;
mod token;
