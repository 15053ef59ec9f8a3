//! A host directory bound into a container ([`super::BindDir`]): the
//! ingress's endpoint files, replaced by this process with a rename each
//! (atomic, microseconds) instead of an archive upload through the engine
//! (tens of milliseconds: Docker 20.10 unpacks every archive in a re-executed
//! chroot helper).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Makes `dir` (and missing parents) a directory others may read (nginx's
/// workers run as another user), and returns it absolute. Refuses a
/// symbolic link, and a path the engine's bind syntax cannot carry.
pub(crate) fn prepare(dir: &Path) -> Result<PathBuf> {
    let dir = std::path::absolute(dir).map_err(|e| io_error(dir, "resolving", &e))?;
    let text = dir
        .to_str()
        .ok_or_else(|| Error::Ingress(format!("the endpoints directory {} is not UTF-8", dir.display())))?;
    if text.contains(':') || text.contains(',') {
        return Err(Error::Ingress(format!(
            "the endpoints directory {text} contains ':' or ',', which the engine's bind syntax cannot carry; choose another"
        )));
    }
    std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, "creating", &e))?;
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| io_error(&dir, "reading", &e))?;
    if !meta.is_dir() {
        return Err(Error::Ingress(format!(
            "the endpoints directory {text} is not a directory (a symbolic link is refused); remove it or choose another"
        )));
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| io_error(&dir, "setting the mode of", &e))?;
    Ok(dir)
}

/// Replaces each file (a plain name, no directories) in `dir`: written to
/// a hidden temporary beside it, then renamed over it, so a reader sees the
/// old content or the new one, never a part.
pub(crate) fn replace_files(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<()> {
    for (name, content) in files {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(Error::Ingress(format!(
                "refusing to write {name:?} into {}",
                dir.display()
            )));
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        let target = dir.join(name);
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&tmp)?;
            f.write_all(content)?;
            // The mode of an existing temporary is not changed by `open`.
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            drop(f);
            std::fs::rename(&tmp, &target)
        };
        write().map_err(|e| io_error(&target, "writing", &e))?;
    }
    Ok(())
}

/// Writes a file whose name starts with a dot (hidden from the endpoint
/// files' readers) in `dir`, mode 0644 as [`replace_files`] gives. Written
/// in place, not renamed: only this process reads it, after the write.
pub(crate) fn write_marker(dir: &Path, name: &str, content: &[u8]) -> Result<()> {
    let target = dir.join(name);
    std::fs::write(&target, content).map_err(|e| io_error(&target, "writing", &e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| io_error(&target, "setting the mode of", &e))
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> Error {
    Error::Ingress(format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_whole_and_names_are_checked() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = prepare(&tmp.path().join("a/endpoints")).expect("prepare");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        replace_files(&dir, &[("web.a".into(), b"one".to_vec())]).expect("write");
        replace_files(&dir, &[("web.a".into(), b"two".to_vec())]).expect("rewrite");
        assert_eq!(std::fs::read(dir.join("web.a")).expect("read"), b"two");
        let mode = std::fs::metadata(dir.join("web.a")).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // No temporary is left behind.
        let names: Vec<String> = std::fs::read_dir(&dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["web.a"]);
        for bad in ["", "../x", "a/b", ".hidden"] {
            assert!(replace_files(&dir, &[(bad.into(), vec![])]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlink_or_a_file_or_a_colon_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let real = prepare(&tmp.path().join("real")).expect("prepare");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        assert!(prepare(&link).is_err());
        let file = tmp.path().join("file");
        std::fs::write(&file, b"").expect("file");
        assert!(prepare(&file).is_err());
        assert!(prepare(&tmp.path().join("a:b")).is_err());
    }
}
