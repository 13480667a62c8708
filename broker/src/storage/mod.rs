//! Persistent storage of stompd: the write-ahead journal of the persistent queues.
//!
//! Start with [`journal`]: its module docs describe the on-disk format and the invariants.

pub mod journal;
pub mod record;
mod segment;
mod state;
pub(crate) mod writer;

#[cfg(test)]
mod model_tests;

pub use journal::{
    Commit, ErrorSink, FsyncPolicy, Journal, JournalError, JournalOptions, JournalStats, Recovered,
    RecoveredQueue, RecoveryReport,
};
pub use record::{PagedMessage, QueueName, Record, StoredMessage};
