//! stompd: a STOMP 1.0/1.1/1.2 message broker.
//!
//! Layers, each tested alone: `stompd-protocol` turns bytes into frames; [`session`] turns frames
//! into broker operations for one connection; [`broker`] resolves destinations to [`queue`]s and
//! [`topic`]s; a queue's logic is the synchronous [`queue::state::QueueState`].

pub mod admin;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod error;
pub mod message;
pub mod queue;
pub mod registry;
pub mod selector;
pub mod server;
pub mod session;
pub mod storage;
pub mod tls;
pub mod tools;
pub mod topic;
pub mod ws;
