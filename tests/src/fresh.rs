//! Tests test what was built: the monitor and the guest images the end-to-end tests run
//! must be at least as new as every source file they were built from, or the test fails
//! naming the newer file and `scripts/build`.
//!
//! Why a check and not a dependency: this crate cannot depend on the monitor binary
//! (`CARGO_BIN_EXE_flexos-vmm` exists only for tests inside the `vmm` package), and the
//! guest images are built for another target by another workspace, which no cargo
//! dependency can express. `scripts/test` runs `scripts/build` first; a developer who runs
//! `cargo test -p flexos-e2e` after an edit is told to rebuild instead of silently
//! testing the old binary.
//!
//! "Built from" is exactly the list cargo records in the dep-info file next to each
//! build output (`<output>.d`: every local source file rustc read, plus the linker
//! script a build script declared), so an edit to a file the artifact does not use
//! (a test, a fuzz target, a script) never counts as stale.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Checks `artifact` once per test process; panics with the reason if it is stale.
///
/// `dep_info` is cargo's `.d` file for the build output; `built` is that build output
/// when `artifact` is a copy of it (the images), so a build that was never copied is
/// stale too.
pub(crate) fn require_fresh(artifact: &Path, dep_info: &Path, built: Option<&Path>) {
    static CHECKED: OnceLock<Mutex<HashMap<PathBuf, Result<(), String>>>> = OnceLock::new();
    let mut checked = CHECKED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let result = checked
        .entry(artifact.to_path_buf())
        .or_insert_with(|| check(artifact, dep_info, built));
    if let Err(msg) = result {
        panic!("{msg}");
    }
}

/// Ok if `artifact` is no older than `built` and than every source `dep_info` lists.
pub(crate) fn check(artifact: &Path, dep_info: &Path, built: Option<&Path>) -> Result<(), String> {
    let stale = |newer: &Path| {
        format!(
            "{} is older than {}: run scripts/build (the tests run what was built)",
            artifact.display(),
            newer.display()
        )
    };
    let when = mtime(artifact)?;
    if let Some(built) = built {
        if mtime(built)? > when {
            return Err(stale(built));
        }
    }
    let text = std::fs::read_to_string(dep_info).map_err(|e| {
        format!(
            "cannot read {} ({e}), which lists what {} was built from: run scripts/build",
            dep_info.display(),
            artifact.display()
        )
    })?;
    for source in sources(&text) {
        // A source that is gone (a deleted module) cannot be newer; the edit that
        // removed its `mod` line is.
        if let Ok(t) = mtime(&source) {
            if t > when {
                return Err(stale(&source));
            }
        }
    }
    Ok(())
}

fn mtime(path: &Path) -> Result<SystemTime, String> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} ({e}): run scripts/build first", path.display()))
}

/// The prerequisites of a Makefile-style dep-info file: `target: dep dep ...`, with
/// spaces inside a path escaped by a backslash.
fn sources(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((_, deps)) = line.split_once(": ") else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => current.extend(chars.next()),
                ' ' => {
                    if !current.is_empty() {
                        out.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            out.push(PathBuf::from(current));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use super::*;
    use crate::TempDir;

    fn touch(path: &Path, secs: u64) {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(t))
            .unwrap();
    }

    /// An artifact built at t=100 from `a.rs` and `dir with space/b.rs`.
    fn setup() -> (TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = TempDir::new("fresh");
        let a = dir.write("a.rs", b"");
        std::fs::create_dir(dir.path().join("dir with space")).unwrap();
        let b = dir.write("dir with space/b.rs", b"");
        let artifact = dir.write("app", b"");
        let d = format!(
            "{}: {} {}\n",
            artifact.display(),
            a.display(),
            b.display().to_string().replace(' ', "\\ ")
        );
        let dep_info = dir.write("app.d", d.as_bytes());
        touch(&a, 50);
        touch(&b, 60);
        touch(&artifact, 100);
        (dir, artifact, dep_info, b)
    }

    #[test]
    fn an_artifact_newer_than_its_sources_is_fresh() {
        let (_dir, artifact, dep_info, _) = setup();
        assert_eq!(check(&artifact, &dep_info, None), Ok(()));
    }

    #[test]
    fn an_edited_source_makes_it_stale_and_says_what_to_run() {
        let (_dir, artifact, dep_info, b) = setup();
        touch(&b, 200);
        let err = check(&artifact, &dep_info, None).unwrap_err();
        assert!(err.contains("scripts/build"), "{err}");
        assert!(err.contains("dir with space/b.rs"), "{err}");
        assert!(err.starts_with(&artifact.display().to_string()), "{err}");
    }

    #[test]
    fn a_build_that_was_not_copied_is_stale() {
        let (dir, artifact, dep_info, _) = setup();
        let built = dir.write("built", b"");
        touch(&built, 150);
        let err = check(&artifact, &dep_info, Some(&built)).unwrap_err();
        assert!(err.contains("older than") && err.contains("built"), "{err}");
    }

    #[test]
    fn a_missing_dep_info_file_fails_with_the_fix() {
        let (dir, artifact, _, _) = setup();
        let err = check(&artifact, &dir.path().join("gone.d"), None).unwrap_err();
        assert!(
            err.contains("gone.d") && err.contains("scripts/build"),
            "{err}"
        );
    }

    #[test]
    fn dep_info_paths_with_escaped_spaces_are_one_path() {
        assert_eq!(
            sources("out: /a/x.rs /b/with\\ space.rs\n\n/a/x.rs:\n"),
            [PathBuf::from("/a/x.rs"), PathBuf::from("/b/with space.rs")]
        );
    }
}
