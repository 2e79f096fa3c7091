//! The engine: executes plans through ports.
//!
//! - [`ports`]: the traits the world must implement (compute, load balancing, the
//!   override-file probe, notifications, the run store, the clock).
//! - [`exec`]: the executor, a resumable reconciler that paces, retries and isolates
//!   failures, and returns "wake me in N seconds" instead of sleeping.
//! - [`pace`]: token buckets and backoff.
//! - [`run`]: the run record saved after every step.
//! - [`share`]: pacing shared through the store by runs of different processes.
//! - [`memory`]: an in-memory run store for tests and the demo.
//!
//! **Architecture invariant:** no SDK, HTTP or database type appears here; adapters
//! live in their own crates.

pub mod contract;
pub mod exec;
pub mod memory;
pub mod notify;
pub mod pace;
pub mod ports;
pub mod run;
pub mod share;

pub use exec::{Begin, Buckets, EngineError, Executor, Ports, RunRequest, Settings, Tick, drive};
pub use run::{Run, RunStatus};
