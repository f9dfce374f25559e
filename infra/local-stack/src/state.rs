//! How a running `local-stack up` is found by the other subcommands: it records where its
//! functions listen, so `local-stack token` prints a `curl` line for the real port.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::paths;

/// Overrides where the state is kept (tests keep their own).
pub const STATE_ENV: &str = "LOCAL_STACK_STATE";

/// What `up` records while it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackState {
    /// Where `cargo lambda watch` serves the functions, e.g. `http://127.0.0.1:9000`.
    pub port: u16,
}

impl StackState {
    pub fn functions_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Whether something still listens there (a stack stopped without cleaning up does not).
    fn listening(&self) -> bool {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
    }
}

/// `$LOCAL_STACK_STATE`, else `.local/local-stack.json` under the workspace root.
pub fn path() -> PathBuf {
    std::env::var_os(STATE_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths::root().join(".local/local-stack.json"))
}

/// Records a running stack at `path` (see [`path`]).
pub fn write(path: &Path, state: &StackState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, serde_json::to_vec(state)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Forgets the stack recorded at `path` (it is stopping).
pub fn clear(path: &Path) {
    // Nothing to undo when it is already gone.
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("could not remove {}: {e}", path.display());
    }
}

/// The stack recorded at `path`, if one is and it still listens.
pub fn running(path: &Path) -> Option<StackState> {
    let bytes = std::fs::read(path).ok()?;
    let state: StackState = serde_json::from_slice(&bytes).ok()?;
    state.listening().then_some(state)
}
