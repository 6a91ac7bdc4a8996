//! rowcast keeps a serverless function in step with a SQL query.
//!
//! The modules follow a sync's data in the order it flows: [`manifest`] reads and checks
//! the YAML, [`model`] runs the query where the data lives, [`state`] keeps what the
//! function acknowledged, and [`plan`] diffs the two into a change plan; [`execute`]
//! delivers it and [`runs`] keeps the history of what each run did. [`workspace`],
//! [`commands`] and [`cli`] wire the stages to the command line; [`contract`] is what a
//! function receives and answers.

// The stages, in the order a sync's rows flow through them.
pub mod manifest;
pub mod model;
pub mod plan;
pub mod state;
// After the execute stage: what each run did, for people and machines.
pub mod runs;

// The function contract and the command line.
pub mod cli;
pub mod commands;
pub mod contract;
pub mod execute;
pub mod exit;
pub mod workspace;
