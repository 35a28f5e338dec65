//! CPU time and memory of a process, read from `/proc` (Linux).
//!
//! Read from files rather than asked of the kernel with `getrusage`, which
//! would need `unsafe`. Elsewhere every reading is `None` and the report
//! leaves those figures out.

use std::time::Duration;

/// Clock ticks per second in `/proc/PID/stat`: `USER_HZ`, which Linux
/// fixes at 100 for everything it exports to user space.
const TICKS_PER_SECOND: u64 = 100;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// User plus system CPU time, all threads.
    pub cpu: Duration,
    /// Resident memory.
    pub rss_bytes: u64,
    /// Time its threads were ready to run but waited for a CPU, all
    /// threads: large when something else on the machine competes.
    pub waited: Duration,
}

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Process {
    This,
    Pid(u32),
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::This => "/proc/self".to_owned(),
            Process::Pid(pid) => format!("/proc/{pid}"),
        }
    }

    /// Reads CPU time and resident memory, if `/proc` has them.
    pub fn sample(self) -> Option<Sample> {
        let dir = self.dir();
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        Some(Sample { cpu: cpu_time(&stat)?, rss_bytes: rss(&status)?, waited: waited(&dir) })
    }
}

/// `utime + stime` from a `/proc/PID/stat` line. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`: `utime` and `stime` are the 12th and 13th after it.
fn cpu_time(stat: &str) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

/// Run-queue wait summed over the threads in `DIR/task/*/schedstat`,
/// whose second field is the time waited, in nanoseconds (zero where the
/// kernel keeps no scheduler statistics).
fn waited(dir: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) else { return Duration::ZERO };
    let nanos: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// `VmRSS` from `/proc/PID/status`, in bytes.
fn rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_counts_fields_after_the_name() {
        let stat = "4242 (confab (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(cpu_time(stat), Some(Duration::from_millis(3250)));
    }

    #[test]
    fn rss_is_read_in_bytes() {
        let status = "Name:\tconfab\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(rss(status), Some(1234 * 1024));
    }

    #[test]
    fn this_process_can_be_read_on_linux() {
        if cfg!(target_os = "linux") {
            let sample = Process::This.sample().expect("/proc/self is readable");
            assert!(sample.rss_bytes > 0);
        }
    }
}
