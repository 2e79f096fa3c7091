//! The use cases every driver shares: the command line, the `serve` service, the HTTP
//! API and the Lambda functions call these, and add only their own parsing and
//! rendering.
//!
//! - [`env`]: [`App`], the environment a driver builds once (store, how to reach the
//!   cloud, the caller as lock owner, the request counter), and [`Cloud`].
//! - [`workloads`]: reading and checking files, finding a workload, loading files
//!   into the store, export, plans from files alone.
//! - [`runs`]: dry runs, running to the end (the one foreground loop, [`runs::drive`]),
//!   advancing by one tick, cancelling, history.
//! - [`status`]: a workload as the cloud shows it now; [`observed`]: observations
//!   shared by many readers, at most a second old.
//! - [`exemptions`]: exemptions from stop.
//! - [`schedules`]: what schedules wish at an instant, their next events, overrides.
//! - [`savings`]: what schedules save against running always, with prices.
//! - [`serve`]: the always-on service that fires schedule events and drives runs;
//!   [`gate`]: the same rules for one event, for drivers woken at its instant;
//!   [`sync`]: one-time schedules of the next events, for such a driver's scheduler.
//! - [`error`]: [`Error`], named by meaning ([`Kind`]: invalid, not found, conflict,
//!   forbidden, upstream, internal), keeping every source.
//! - [`sim`]: the simulated cloud saved to a fleet file; [`files`]: bounded reads,
//!   atomic writes, file locks.
//!
//! No argument parser, HTTP framework or Lambda type appears here.

pub mod access;
pub mod clouds;
pub mod env;
pub mod error;
pub mod exemptions;
pub mod files;
pub mod gate;
pub mod observed;
pub mod runs;
pub mod savings;
pub mod schedules;
pub mod serve;
pub mod sim;
pub mod status;
pub mod sync;
pub mod workloads;

pub use ec2_scheduler_engine::Begin;
pub use env::{App, Cloud, CloudSpec, Fence, Speed, Store, StoreOpts};
pub use error::{Error, Kind, Result};
pub use runs::{Next, Outcome, Quiet, Watch};
