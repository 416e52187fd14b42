//! Durability of a publish: fsync of the snapshot's files and folders around the switch of
//! `current`, so that after a power cut `current` points either at the previous snapshot or
//! at a complete new one, never at files whose data never reached the disk.
//!
//! A rename is atomic for readers but not durable by itself: the file system may persist the
//! new directory entry (and `current`'s new target) before the data blocks of the files it
//! names. The order therefore is: every file of the new snapshot, then its folders (children
//! first), then the rename into `snapshots/` and an fsync of `snapshots/`, then the new symlink
//! renamed over `current` and an fsync of the export folder.
//!
//! Tests see the order through a per-thread log of what was synced (`cfg(test)` only).

use std::fs;
use std::io;
use std::path::Path;

/// Flush a file's data and metadata to disk.
pub(crate) fn sync_file(path: &Path) -> io::Result<()> {
    fs::File::open(path)?.sync_all()?;
    log(Event::File(path.to_path_buf()));
    Ok(())
}

/// Flush a folder's entries (names created, renamed or removed in it) to disk.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    // Linux and the BSDs fsync a directory through a read-only descriptor of it.
    #[cfg(unix)]
    fs::File::open(path)?.sync_all()?;
    log(Event::Dir(path.to_path_buf()));
    Ok(())
}

/// Every file under `dir`, then every folder (children before their parent), then `dir`.
pub(crate) fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            sync_tree(&path)?;
        } else {
            sync_file(&path)?;
        }
    }
    sync_dir(dir)
}

/// The symlink `current` was replaced (logged for the order check in tests).
pub(crate) fn switched(link: &Path) {
    log(Event::Switch(link.to_path_buf()));
}

/// What was made durable, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    File(std::path::PathBuf),
    Dir(std::path::PathBuf),
    Switch(std::path::PathBuf),
}

#[cfg(test)]
thread_local! {
    static LOG: std::cell::RefCell<Vec<Event>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
fn log(event: Event) {
    LOG.with(|l| l.borrow_mut().push(event));
}

#[cfg(not(test))]
fn log(_: Event) {}

/// The events logged on this thread so far, and clear the log.
#[cfg(test)]
pub(crate) fn take_log() -> Vec<Event> {
    LOG.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{CURRENT, Options, SNAPSHOTS, current_snapshot, export};

    fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                files_under(&entry.path(), out);
            } else {
                out.push(entry.path());
            }
        }
    }

    /// Issue #16, scenario 6: every file of the published snapshot and its folders are synced
    /// before `current` is switched, and the export folder (holding `current`) after.
    #[test]
    fn issue_16_publish_syncs_files_and_folders_around_the_switch() {
        let tmp = tempfile::tempdir().unwrap();
        let warehouse = crate::store::Warehouse::open(tmp.path().join("w.duckdb")).unwrap();
        let out = tmp.path().join("export");
        take_log();
        export(
            warehouse.connection(),
            &Options::new(&out),
            chrono::Utc::now(),
        )
        .unwrap();
        let log = take_log();
        let snapshot = current_snapshot(&out).expect("published");
        let mut files = Vec::new();
        files_under(&snapshot, &mut files);
        assert!(files.len() > 3, "{files:?}");
        let switch = log
            .iter()
            .position(|e| *e == Event::Switch(out.join(CURRENT)))
            .expect("the switch is logged");
        // Files were synced under the temporary name the snapshot had before its rename.
        for file in &files {
            let rel = file.strip_prefix(&snapshot).unwrap();
            let synced = log[..switch].iter().any(|e| match e {
                Event::File(p) => p.ends_with(rel) && p.starts_with(out.join(SNAPSHOTS)),
                _ => false,
            });
            assert!(
                synced,
                "`{}` synced before the switch: {log:?}",
                file.display()
            );
        }
        assert!(
            log[..switch].contains(&Event::Dir(out.join(SNAPSHOTS))),
            "the rename into snapshots/ is synced before the switch: {log:?}"
        );
        assert!(
            log[switch..].contains(&Event::Dir(out.clone())),
            "the export folder is synced after the switch: {log:?}"
        );
    }
}
