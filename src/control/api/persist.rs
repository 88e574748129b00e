//! Writing an accepted API change back to the config file (`admin.persist`, DESIGN §9), on
//! the control thread, before the change is published: a change that cannot be written is
//! not made. The new text goes to a temporary file in the file's own directory (so that the
//! rename cannot cross file systems), is fsynced, the previous file is copied to `FILE.bak`,
//! and the rename replaces the file in one step: a reader or a power cut sees the old file or
//! the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Replaces the file at `path` with `text`, keeping the previous one as `FILE.bak`; returns
/// the new file's mtime (for the reload poll, which must not take this write for an outside
/// edit). On error nothing has replaced the file, and the reason says what failed.
pub fn replace(path: &Path, text: &str) -> Result<Option<SystemTime>, String> {
    // A symlinked config (a common way to keep it on writable flash) is written where it
    // points, and stays a symlink.
    let target = fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.ferry-{}.tmp", std::process::id()));
    let bak = PathBuf::from(format!("{}.bak", target.display()));
    let result = write_and_swap(&target, &temp, &bak, text);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result?;
    // The rename itself is made durable by syncing the directory; a failure here is no
    // reason to undo a change that is in place.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(fs::metadata(path).and_then(|m| m.modified()).ok())
}

/// Puts the previous file (`FILE.bak`) back in place of the one `replace` wrote.
pub fn restore(path: &Path) -> std::io::Result<()> {
    let target = fs::canonicalize(path)?;
    fs::rename(format!("{}.bak", target.display()), &target)
}

fn write_and_swap(target: &Path, temp: &Path, bak: &Path, text: &str) -> Result<(), String> {
    let perms = fs::metadata(target)
        .map_err(|e| format!("{}: {e}", target.display()))?
        .permissions();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(temp)
        .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
    // The file may hold the admin token and passwords: the copy is as private as the file.
    f.set_permissions(perms)
        .and_then(|_| f.write_all(text.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    drop(f);
    fs::copy(target, bak)
        .and_then(|_| File::open(bak)?.sync_all())
        .map_err(|e| format!("cannot keep the previous file as {}: {e}", bak.display()))?;
    fs::rename(temp, target).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            temp.display(),
            target.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ferry-persist-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_file_is_replaced_and_the_old_one_kept() {
        let d = dir("ok");
        let f = d.join("ferry.yaml");
        fs::write(&f, "old: 1\n").unwrap();
        assert!(replace(&f, "new: 2\n").unwrap().is_some());
        assert_eq!(fs::read_to_string(&f).unwrap(), "new: 2\n");
        assert_eq!(
            fs::read_to_string(d.join("ferry.yaml.bak")).unwrap(),
            "old: 1\n"
        );
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            2,
            "no temporary file left"
        );
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_write_leaves_the_file_and_no_temporary() {
        let d = dir("fail");
        let f = d.join("ferry.yaml");
        fs::write(&f, "old: 1\n").unwrap();
        // A directory where the backup goes: fails for root too, unlike a read-only mode.
        fs::create_dir(d.join("ferry.yaml.bak")).unwrap();
        let e = replace(&f, "new: 2\n").unwrap_err();
        assert!(e.contains("ferry.yaml.bak"), "{e}");
        assert_eq!(fs::read_to_string(&f).unwrap(), "old: 1\n");
        assert_eq!(
            fs::read_dir(&d).unwrap().count(),
            2,
            "no temporary file left"
        );
        let _ = fs::remove_dir_all(&d);
    }
}
