//! `copy`: studies of one database into another, e.g. from the embedded SQLite file to
//! PostgreSQL once one server is not enough (or back). Each study is read in one
//! snapshot and written in one transaction as a new study of the target; see
//! `Store::export_study` and `Store::import_study`.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tuner_core::StudyId;
use tuner_store::StudyDump;

use crate::db::{DbTarget, OpenStore};

pub async fn copy(from: &str, to: &str, studies: &[StudyId]) -> Result<()> {
    let (from, to) = (DbTarget::parse(from), DbTarget::parse(to));
    // Checked before opening: opening a SQLite file creates it.
    if let DbTarget::Sqlite(path) = &from
        && !path.is_file()
    {
        bail!(
            "the source database {} does not exist{}",
            path.display(),
            if path.exists() { " (not a file)" } else { "" }
        );
    }
    if from.same_database(&to) {
        bail!(
            "--from and --to are the same database ({}): a study cannot be copied into the \
             database it comes from",
            from.describe()
        );
    }
    let source = OpenStore::open(&from)
        .await
        .context("cannot open the source")?;
    let target = OpenStore::open(&to)
        .await
        .context("cannot open the target")?;
    let result = copy_studies(&source, &target, &from, &to, studies).await;
    source.close().await;
    target.close().await;
    result
}

async fn copy_studies(
    source: &OpenStore,
    target: &OpenStore,
    from: &DbTarget,
    to: &DbTarget,
    studies: &[StudyId],
) -> Result<()> {
    let (src, dst) = (source.shared(), target.shared());
    let ids = if studies.is_empty() {
        src.list_studies()
            .await
            .with_context(|| format!("cannot list the studies of {}", from.describe()))?
            .into_iter()
            .map(|s| s.id)
            .collect()
    } else {
        studies.to_vec()
    };
    if ids.is_empty() {
        eprintln!("{} has no studies: nothing copied", from.describe());
    }
    for (done, id) in ids.iter().enumerate() {
        let dump = src
            .export_study(*id)
            .await
            .with_context(|| format!("cannot read study {id} from {}", from.describe()))?;
        let copy = dst.import_study(&dump).await.with_context(|| {
            format!(
                "cannot write study {id} into {} (nothing of it was written; {done} \
                 study(ies) before it were copied)",
                to.describe()
            )
        })?;
        println!(
            "study {id} → {}: {} trials, {} epochs, {} events",
            copy.id,
            dump.trials.len(),
            dump.epoch_count(),
            dump.events.len()
        );
        warn_about_leases(&dump, copy.id);
    }
    Ok(())
}

/// A study copied while trials ran: say what becomes of their leases on the target.
fn warn_about_leases(dump: &StudyDump, copy: StudyId) {
    let running = dump.running_count();
    if running == 0 {
        return;
    }
    let latest = dump
        .trials
        .iter()
        .filter_map(|t| t.lease_expires_at)
        .max()
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let when = if latest <= now {
        "have already expired, so a server started on the target re-queues them at once".to_owned()
    } else {
        format!(
            "expire there within {} s and a server on the target then re-queues them",
            (latest - now + 999) / 1000
        )
    };
    eprintln!(
        "warning: study {} had {running} running trial(s); it is copied as it was (now study \
         {copy}), leases included. Those leases are held by workers talking to the source's \
         servers; on the target they are valid only for a worker pointed at it, and the \
         copy's trials have new ids, so expect none to carry on there: the leases {when} (or \
         fails them once out of retries) and the trials run again. Trials that finish on the source from now on are not in the copy: \
         to move a study whole, stop it and let its running trials finish first.",
        dump.study.id
    );
}
