//! The functions under `cargo lambda watch`: the real Lambda runtime loop, with the HTTP routes
//! of the workspace's `[workspace.metadata.lambda.watch.router]` mirroring API Gateway's.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::paths;

/// Instances of each function `cargo lambda watch` may run at once. Its default is 1, which
/// serves one webhook post (and one bridge invocation) at a time; Lambda scales out instead.
/// Each instance is a process of its own, so this stays small on a 2-core machine.
pub const CONCURRENCY: usize = 4;

pub struct LambdaWatch {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl LambdaWatch {
    /// Starts `cargo lambda watch` on 127.0.0.1:`port` with `env` for every function.
    /// Its output goes to `.local/watch-<port>.log`.
    pub fn start(port: u16, env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let dir = paths::root().join(".local");
        std::fs::create_dir_all(&dir)?;
        let env_file = dir.join(format!("watch-{port}.env"));
        let lines: String = env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", env_file_value(v)))
            .collect();
        std::fs::write(&env_file, lines)?;
        let log = dir.join(format!("watch-{port}.log"));
        let out = File::create(&log)?;
        let cargo_lambda = paths::venv_bin().join("cargo-lambda");
        let child = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
            ])
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--concurrency")
            .arg(CONCURRENCY.to_string())
            .arg("--env-file")
            .arg(&env_file)
            .current_dir(paths::root())
            .env("PATH", paths::path_with_venv())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group, so stopping it also stops the functions it started.
            .process_group(0)
            .spawn()
            .with_context(|| format!("failed to start {}", cargo_lambda.display()))?;
        Ok(Self { child, port, log })
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until the invoke server accepts connections.
    pub fn wait_listening(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "cargo lambda watch exited ({status}); see {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "cargo lambda watch did not listen within {timeout:?}; see {}",
            self.log.display()
        )
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let stopped = Command::new("kill").args(["-TERM", "--", &group]).status();
        if !stopped.is_ok_and(|s| s.success()) {
            eprintln!("could not signal cargo lambda watch's process group; killing it alone");
            self.child.kill().ok();
        }
        self.child.wait().ok();
    }
}

/// A value as cargo lambda's env file (dotenv) reads it back unchanged: single-quoted (literal),
/// or double-quoted with `\`, `"` and `$` escaped when it holds a single quote. Unquoted, a value
/// such as `Reminders <reminders@example.com>` does not parse.
fn env_file_value(value: &str) -> String {
    if !value.contains('\'') {
        return format!("'{value}'");
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('$', "\\$");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::env_file_value;

    #[test]
    fn values_with_spaces_and_angle_brackets_are_quoted() {
        assert_eq!(
            env_file_value("Reminders <reminders@example.com>"),
            "'Reminders <reminders@example.com>'"
        );
        assert_eq!(env_file_value(""), "''");
        assert_eq!(env_file_value("it's $HOME"), "\"it's \\$HOME\"");
    }
}
