//! Quick or long runs (`CHAOS_MODE`), and where a run keeps its files (`CHAOS_DIR`).

use std::path::PathBuf;

/// How big and how long a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// CI: fewer submissions, shorter faults; every scenario in about a minute.
    Quick,
    /// By hand (`scripts/chaos --long`): the full sizes, longer and repeated faults.
    Long,
}

impl Mode {
    /// From `CHAOS_MODE` (`quick`, the default, or `long`).
    pub fn from_env() -> Self {
        match std::env::var("CHAOS_MODE").as_deref() {
            Ok("long") => Mode::Long,
            _ => Mode::Quick,
        }
    }

    /// `quick` in quick mode, `long` in long mode.
    pub fn pick<T>(self, quick: T, long: T) -> T {
        match self {
            Mode::Quick => quick,
            Mode::Long => long,
        }
    }

    /// The name shown in the report.
    pub fn as_str(self) -> &'static str {
        self.pick("quick", "long")
    }
}

/// `CHAOS_DIR`, default `target/chaos`: the report, the pid list and one folder per scenario
/// (broker data and logs, the service's logs).
pub fn chaos_dir() -> PathBuf {
    let dir = std::env::var_os("CHAOS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/chaos"),
        PathBuf::from,
    );
    let _ = std::fs::create_dir_all(&dir);
    dir
}
