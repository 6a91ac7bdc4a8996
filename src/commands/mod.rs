//! One file per command, each with one entry function `run`.

pub mod apply;
pub mod check;
mod confirm;
pub mod lock;
pub mod plan;
pub mod reset;
pub mod resync;
pub mod rows;
pub mod runs;
pub mod schema;
pub mod validate;
