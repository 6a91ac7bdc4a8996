//! The run history: what each apply did, kept in the state database beside the snapshot
//! it explains. [`record`] writes it (through the apply's committer, in the same
//! transactions as the outcomes), [`query`] reads it back, and [`render`] and [`html`]
//! show it to people, machines and spreadsheets.

pub mod html;
pub mod query;
pub mod record;
pub mod render;

use anyhow::Context;

use crate::workspace::Workspace;

/// Deletes the kept bodies of the project's syncs that passed their retention. `apply`
/// and the history commands call it, so a body outlives its retention only until the
/// next of them runs.
pub fn prune_bodies(workspace: &Workspace) -> anyhow::Result<()> {
    let retention: Vec<_> = workspace
        .project
        .syncs
        .iter()
        .filter_map(|s| {
            let kept = s.manifest.record_bodies.as_ref()?;
            Some((s.manifest.name.clone(), kept.retention.get()))
        })
        .collect();
    let deleted = record::prune_bodies(&workspace.db.conn, &retention)
        .context("cannot delete the request and response bodies past their retention")?;
    if deleted > 0 {
        tracing::info!(bodies = deleted, "deleted bodies past their retention");
    }
    Ok(())
}
