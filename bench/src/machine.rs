//! What machine a run measured, and how busy it was: CPU, kernel, toolchain, load and stolen
//! CPU time, read from `/proc` and the tools themselves.

use std::process::Command;

/// Facts printed at the top of the report.
#[derive(Debug, Clone)]
pub(crate) struct MachineDetails {
    pub(crate) cpu_model: String,
    pub(crate) cpus: usize,
    pub(crate) kernel: String,
    pub(crate) rustc: String,
    pub(crate) glibc: String,
    pub(crate) memory_gib: f64,
}

impl MachineDetails {
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, model)| model.trim().to_owned());
        let cpus = std::thread::available_parallelism().map_or(0, |count| count.get());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
        let rustc = first_line_of(std::env::var("RUSTC").as_deref().unwrap_or("rustc"), &["-V"]);
        let glibc = first_line_of("ldd", &["--version"]);
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemTotal:"))
                    .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        Self { cpu_model, cpus, kernel, rustc, glibc, memory_gib }
    }
}

fn first_line_of(program: &str, arguments: &[&str]) -> String {
    Command::new(program)
        .args(arguments)
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout).lines().next().map(str::to_owned)
        })
        .unwrap_or_else(|| format!("{program}: not found"))
}

/// The 1-minute load average.
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Samples the load average in the background, every `interval`, until dropped.
#[derive(Debug)]
pub(crate) struct LoadSampler {
    samples: std::sync::Arc<std::sync::Mutex<Vec<f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LoadSampler {
    pub(crate) fn start(interval: std::time::Duration) -> Self {
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let samples = samples.clone();
            async move {
                loop {
                    samples.lock().expect("samples").push(load_average());
                    tokio::time::sleep(interval).await;
                }
            }
        });
        Self { samples, task }
    }

    /// The samples so far.
    pub(crate) fn samples(&self) -> Vec<f64> {
        self.samples.lock().expect("samples").clone()
    }
}

impl Drop for LoadSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Cumulative CPU time of the whole machine from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuTimes {
    pub(crate) busy: u64,
    pub(crate) idle: u64,
    pub(crate) steal: u64,
}

impl CpuTimes {
    pub(crate) fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = stat.lines().find(|line| line.starts_with("cpu ")) else {
            return Self::default();
        };
        let fields: Vec<u64> =
            line.split_whitespace().skip(1).filter_map(|field| field.parse().ok()).collect();
        let field = |index: usize| fields.get(index).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal guest guest_nice
        let idle = field(3) + field(4);
        let steal = field(7);
        let busy = field(0) + field(1) + field(2) + field(5) + field(6);
        Self { busy, idle, steal }
    }

    /// Shares of the time since `earlier` that the CPUs were busy and that the hypervisor stole.
    pub(crate) fn shares_since(&self, earlier: &CpuTimes) -> (f64, f64) {
        let busy = self.busy.saturating_sub(earlier.busy) as f64;
        let idle = self.idle.saturating_sub(earlier.idle) as f64;
        let steal = self.steal.saturating_sub(earlier.steal) as f64;
        let total = busy + idle + steal;
        if total == 0.0 { (0.0, 0.0) } else { (busy / total, steal / total) }
    }
}

/// Clock ticks per second of `/proc` CPU times.
pub(crate) fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Resource use of one process, from `/proc/PID`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessSample {
    /// User plus system CPU time, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// Context switches of all its threads, voluntary and not: how often it woke up.
    pub(crate) context_switches: u64,
    pub(crate) resident_kib: u64,
    pub(crate) threads: u64,
}

impl ProcessSample {
    pub(crate) fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold spaces: fields start after the last ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // After the name: state is field 3 of stat(5), so utime (14) and stime (15) are 11 and 12.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let number_after = |key: &str, text: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        let mut context_switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                if let Ok(text) = std::fs::read_to_string(task.path().join("status")) {
                    context_switches += number_after("voluntary_ctxt_switches:", &text)
                        + number_after("nonvoluntary_ctxt_switches:", &text);
                }
            }
        }
        Some(Self {
            cpu_ticks: utime + stime,
            context_switches,
            resident_kib: number_after("VmRSS:", &status),
            threads: number_after("Threads:", &status),
        })
    }

    /// `pid` and its live children together: a `hotswap serve` and its generations' host
    /// processes (each generation runs in a process of its own).
    pub(crate) fn read_family(pid: u32) -> Option<Self> {
        let mut total = Self::read(pid)?;
        for child in children_of(pid) {
            if let Some(sample) = Self::read(child) {
                total.cpu_ticks += sample.cpu_ticks;
                total.context_switches += sample.context_switches;
                total.resident_kib += sample.resident_kib;
                total.threads += sample.threads;
            }
        }
        Some(total)
    }
}

/// The live (not zombie) child processes of `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let mut fields = rest.split_whitespace();
            let state = fields.next();
            let parent_pid = fields.next().and_then(|parent_pid| parent_pid.parse::<u32>().ok());
            parent_pid == Some(parent) && state != Some("Z")
        })
        .collect()
}
