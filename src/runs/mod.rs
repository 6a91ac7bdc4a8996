//! The run history: what each apply did, kept in the state database beside the snapshot
//! it explains. [`record`] writes it (through the apply's committer, in the same
//! transactions as the outcomes), [`query`] reads it back, and [`render`] and [`html`]
//! show it to people, machines and spreadsheets.

pub mod html;
pub mod query;
pub mod record;
pub mod render;
