//! A moto server on 127.0.0.1, started from the project's virtualenv and stopped on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

use crate::paths;

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
    pub port: u16,
}

impl MotoServer {
    /// Starts moto on 127.0.0.1:`port` (a free port if `None`) and waits until it accepts requests.
    pub fn start(port: Option<u16>) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1", port)
    }

    /// Starts moto on `host` (e.g. `0.0.0.0`, so `sam local`'s containers can reach it).
    pub fn start_on(host: &str, port: Option<u16>) -> anyhow::Result<Self> {
        let port = match port {
            Some(p) => p,
            None => crate::free_port()?,
        };
        let python = paths::venv_bin().join("python");
        if !python.exists() {
            bail!(
                "{} not found: run infra/bootstrap (or the README's demo/test command) first",
                python.display()
            );
        }
        let mut child = Command::new(&python)
            .arg(paths::root().join("infra/local/moto_server.py"))
            .arg(port.to_string())
            .arg(host)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("failed to start moto with {}", python.display()))?;
        let stdout = child.stdout.take().context("moto has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("failed to read moto's readiness line")?;
        if !line.starts_with("ready") {
            let _ = child.kill();
            bail!("moto did not start on port {port} (is the port taken?)");
        }
        Ok(Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
        })
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Best effort: the server also exits by itself when this process goes away.
        if self.child.kill().is_ok() {
            let _ = self.child.wait();
        }
    }
}
