//! Where the project's files and its virtualenv are.

use std::path::PathBuf;

/// The workspace root (the folder holding `template.yaml`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// The project-local virtualenv's `bin` folder (`LOCAL_VENV` overrides `<root>/.venv`).
pub fn venv_bin() -> PathBuf {
    std::env::var_os("LOCAL_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv"))
        .join("bin")
}

pub fn template() -> PathBuf {
    root().join("template.yaml")
}

/// `PATH` with the virtualenv first, so `cargo lambda`, zig and sam are found.
pub fn path_with_venv() -> std::ffi::OsString {
    let mut paths = vec![venv_bin()];
    if let Some(path) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(paths).expect("PATH entries are joinable")
}
