//! One file per command, each with one entry function `run`.

pub mod apply;
pub mod check;
pub mod lock;
pub mod plan;
pub mod schema;
pub mod validate;
