//! `wrk` (Debian's package), installed when missing, and what it prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// What one `wrk --latency` run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WrkResult {
    pub(crate) requests_per_second: f64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) and non-2xx/3xx responses.
    pub(crate) errors: u64,
}

/// The path of `wrk`, installing Debian's package (as root, with apt-get) when it is missing.
/// `None` when it cannot be had: the caller falls back to the built-in load generator.
pub(crate) fn find_or_install() -> Option<PathBuf> {
    if let Some(path) = find_on_path("wrk") {
        return Some(path);
    }
    eprintln!("hotswap-bench: wrk is not installed; trying `apt-get install -y wrk`");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "wrk"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if !install() {
        let _ = Command::new("apt-get")
            .args(["update", "-q"])
            .stdout(std::process::Stdio::null())
            .status();
        install();
    }
    let found = find_on_path("wrk");
    if found.is_none() {
        eprintln!("hotswap-bench: wrk could not be installed; using the built-in load generator");
    }
    found
}

pub(crate) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `wrk --latency` with `threads` and `connections` for `duration` against `address`,
/// on CPU `cpu` when `taskset` is there.
pub(crate) fn run(
    wrk: &PathBuf,
    address: SocketAddr,
    path: &str,
    threads: u32,
    connections: u32,
    duration: Duration,
    cpu: Option<usize>,
) -> anyhow::Result<WrkResult> {
    let url = format!("http://{address}{path}");
    let arguments = [
        format!("-t{threads}"),
        format!("-c{connections}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".to_owned(),
        url,
    ];
    let output = match (cpu, find_on_path("taskset")) {
        (Some(cpu), Some(taskset)) => Command::new(taskset)
            .arg("-c")
            .arg(cpu.to_string())
            .arg(wrk)
            .args(&arguments)
            .output()?,
        _ => Command::new(wrk).args(&arguments).output()?,
    };
    let text = String::from_utf8_lossy(&output.stdout);
    parse_output(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot read wrk's output:\n{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// Reads requests/s, the 50% and 99% latencies and the errors from `wrk --latency` output.
pub(crate) fn parse_output(text: &str) -> Option<WrkResult> {
    let mut requests_per_second = None;
    let mut latency_p50_ms = None;
    let mut latency_p99_ms = None;
    let mut errors = 0;
    let mut in_distribution = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            requests_per_second = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        } else if in_distribution {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next().and_then(duration_in_ms)) {
                (Some("50%"), Some(value)) => latency_p50_ms = Some(value),
                (Some("99%"), Some(value)) => latency_p99_ms = Some(value),
                (Some(label), _) if label.ends_with('%') => {}
                _ => in_distribution = false,
            }
        }
    }
    Some(WrkResult {
        requests_per_second: requests_per_second?,
        latency_p50_ms: latency_p50_ms?,
        latency_p99_ms: latency_p99_ms?,
        errors,
    })
}

/// `512.00us`, `4.10ms`, `1.02s`, `2.00m` as milliseconds.
fn duration_in_ms(text: &str) -> Option<f64> {
    let split = text.find(|character: char| character.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://127.0.0.1:3000/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   620.11us  410.20us  12.30ms   91.02%
    Req/Sec    26.12k     1.01k   28.90k    70.00%
  Latency Distribution
     50%  512.00us
     75%  700.00us
     90%    1.02ms
     99%    4.10ms
  259920 requests in 5.00s, 31.23MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  51984.00
Transfer/sec:      6.25MB
";

    #[test]
    fn reads_throughput_latency_percentiles_and_errors() {
        let result = parse_output(OUTPUT).unwrap();
        assert_eq!(result.requests_per_second, 51984.0);
        assert!((result.latency_p50_ms - 0.512).abs() < 1e-9);
        assert_eq!(result.latency_p99_ms, 4.10);
        assert_eq!(result.errors, 7);
        assert_eq!(parse_output("garbage"), None);
    }
}
