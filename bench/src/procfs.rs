//! What the kernel says about a process: its resident memory, and the CPU
//! time it (or a whole process group) has used, from `/proc`.

use std::time::Duration;

use anyhow::Context;

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

/// The fields of `/proc/PID/stat` after the command name, which is in
/// parentheses and may itself hold spaces and parentheses: the first is the
/// state (field 3 of proc(5)), so field N is at index N - 3.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// `utime + stime` of a `/proc/PID/stat` line, in clock ticks, and the
/// process group it belongs to.
fn ticks_and_group(stat: &str) -> Option<(u64, u32)> {
    let fields = stat_fields(stat)?;
    let group = fields.get(5 - 3)?.parse().ok()?;
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some((utime + stime, group))
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux whatever the
/// kernel's own tick rate).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    static PER_SECOND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(ticks_per_second);
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// CPU time (user + system) used so far by process `pid`, all its threads,
/// live or ended. The resolution is one clock tick (10 ms).
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat: has the process ended?"))?;
    let (ticks, _) = ticks_and_group(&stat).with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
    Ok(ticks_to_duration(ticks))
}

/// CPU time used so far by every live process of process group `group`
/// (the Firestore emulator: gcloud's Python wrapper and its Java child).
/// A process of the group that ended takes its time with it, so take the
/// difference of two readings only while the group's processes live.
pub(crate) fn group_cpu_time(group: u32) -> anyhow::Result<Duration> {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((t, g)) = ticks_and_group(&stat)
            && g == group
        {
            ticks += t;
        }
    }
    Ok(ticks_to_duration(ticks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let stat = "4242 (java (x) y) S 1 4200 4200 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 40 0 12345";
        assert_eq!(ticks_and_group(stat), Some((287, 4200)));
    }

    #[test]
    fn this_process_has_a_cpu_time_and_belongs_to_its_group() {
        let pid = std::process::id();
        assert!(cpu_time(pid).is_ok());
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let (_, group) = ticks_and_group(&stat).unwrap_or_default();
        assert!(group > 0);
        assert!(group_cpu_time(group).is_ok());
    }
}
