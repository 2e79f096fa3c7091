//! The pure heart of ec2-scheduler.
//!
//! This crate holds the validated workload model ([`model`]), the shape of an observed
//! fleet ([`fleet`]), exemption rules ([`exemption`]), fleet-subset selection
//! ([`subset`]), the planner ([`plan()`]) and schedules ([`schedule`], with their day filters in
//! [`calendar`] and time zones in [`zone`]).
//!
//! **Architecture invariant:** nothing here performs I/O or knows an SDK, HTTP or
//! database type. Planning is a pure function of
//! `(workload, observed instances, action, profile, exemptions, now)`, which is what
//! lets the same plan be computed by the CLI, the engine, the simulator and tests.

pub mod access;
pub mod calendar;
pub mod cron;
pub mod db;
pub mod exemption;
pub mod fleet;
pub mod model;
pub mod overrides;
pub mod plan;
pub mod schedule;
pub mod subset;
pub mod zone;

pub use exemption::{Exemption, TagExemption};
pub use fleet::{Instance, InstanceState};
pub use model::{
    Action, ActionSpec, CrossAccount, FailurePolicy, FleetSubset, Gate, InstanceType, Os,
    OverrideFile, Profile, Readiness, SsmOutput, StartSpec, StopSpec, Tag, Tier, Workload,
};
pub use plan::{PlanError, PlanRequest, plan};
