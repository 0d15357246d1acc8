//! A list of the processes the chaos suite started (`<pid> <program>` per line, in
//! `$CHAOS_DIR/pids`), so that scripts/chaos can end exactly those, by id, if a scenario
//! was itself killed (its time limit) before its guards could run.

use std::io::Write;

/// Appends one started process to the list.
pub fn register(pid: u32, program: &str) {
    let path = super::mode::chaos_dir().join("pids");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{pid} {program}");
    }
}
