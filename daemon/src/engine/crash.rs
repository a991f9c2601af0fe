//! Telling how a generation died: from its exit status, the record its host wrote in the shared
//! page, and the last lines of its stderr (where Rust's runtime says "has overflowed its stack",
//! "memory allocation of N bytes failed", or what panicked while panicking).

use hotswap_protocol::control::{CRASH_EXIT, CRASH_STACK_OVERFLOW, CrashFacts};

use super::host_process::{HostExit, signal_description};

/// Everything known about one crash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashReport {
    pub generation: u64,
    pub pid: u32,
    /// What happened, in one line: "stack overflow in thread 'hotswap-g3' (killed by SIGSEGV
    /// (invalid memory access))".
    pub cause: String,
    pub signal: Option<String>,
    pub exit_code: Option<i32>,
    /// The last lines of the process's stderr.
    pub last_words: Vec<String>,
    /// The request the crashing thread was running, as `METHOD /target`, when known.
    pub request: Option<String>,
}

/// The lines of a crash's stderr that say the most, in the order Rust's runtime prints them.
const TELLING: &[&str] = &[
    "has overflowed its stack",
    "memory allocation of",
    "panicked while processing panic",
    "panic in a function that cannot unwind",
    "panic in a destructor during cleanup",
    "thread caused non-unwinding panic",
    "fatal runtime error",
    "hotswap host: fatal signal",
    "hotswap host: handler code called exit()",
    "panicked at",
];

/// The line of `words` that best says why the process died.
pub fn telling_line(words: &[String]) -> Option<String> {
    for needle in TELLING {
        if let Some(line) = words.iter().rev().find(|line| line.contains(needle)) {
            return Some(line.trim().to_owned());
        }
    }
    None
}

/// Puts a crash report together.
pub fn report(
    generation: u64,
    pid: u32,
    exit: HostExit,
    facts: Option<CrashFacts>,
    words: Vec<String>,
) -> CrashReport {
    let how = exit.describe();
    let thread = facts.as_ref().and_then(|facts| facts.thread_name.clone());
    let cause = match &facts {
        Some(facts) if facts.kind == CRASH_STACK_OVERFLOW => {
            format!("stack overflow in thread '{}' ({how})", thread.as_deref().unwrap_or("unnamed"))
        }
        Some(facts) if facts.kind == CRASH_EXIT => {
            format!("handler code called exit() ({how})")
        }
        _ => match telling_line(&words) {
            Some(line) => {
                let line = line
                    .strip_prefix("hotswap host: ")
                    .unwrap_or(&line)
                    .trim_start_matches("fatal runtime error: ")
                    .to_owned();
                format!("{line} ({how})")
            }
            None if exit.signal == Some(libc::SIGKILL) => how,
            None => format!("{how}, with no message"),
        },
    };
    // Lines the host added for the daemon are in the record already.
    let last_words: Vec<String> = words
        .into_iter()
        .filter(|line| {
            !line.trim().is_empty() && !line.starts_with("hotswap host: the thread was running")
        })
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    CrashReport {
        generation,
        pid,
        cause,
        signal: exit.signal.map(signal_description),
        exit_code: exit.code,
        last_words,
        request: facts.and_then(|facts| facts.request),
    }
}

impl CrashReport {
    /// "generation 3 crashed: stack overflow in thread 'hotswap-g3' (killed by SIGSEGV …) while
    /// running GET /deep".
    pub fn summary(&self) -> String {
        match &self.request {
            Some(request) => {
                format!(
                    "generation {} crashed: {} while running {request}",
                    self.generation, self.cause
                )
            }
            None => format!("generation {} crashed: {}", self.generation, self.cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap_protocol::control::CRASH_SIGNAL;

    fn exit(code: Option<i32>, signal: Option<i32>) -> HostExit {
        HostExit { code, signal, core_dumped: false }
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_stack_overflow_names_the_thread_and_the_request() {
        let facts = CrashFacts {
            kind: CRASH_STACK_OVERFLOW,
            signal: 11,
            fault_address: 0x7000,
            thread_name: Some("hotswap-g3".into()),
            request: Some("GET /deep".into()),
        };
        let crash = report(
            3,
            99,
            exit(None, Some(libc::SIGSEGV)),
            Some(facts),
            lines(
                "\nthread 'hotswap-g3' has overflowed its stack\nfatal runtime error: stack overflow\nhotswap host: the thread was running GET /deep",
            ),
        );
        assert_eq!(
            crash.summary(),
            "generation 3 crashed: stack overflow in thread 'hotswap-g3' (killed by SIGSEGV (invalid memory access)) while running GET /deep"
        );
        assert_eq!(
            crash.last_words,
            lines(
                "thread 'hotswap-g3' has overflowed its stack\nfatal runtime error: stack overflow"
            )
        );
    }

    #[test]
    fn an_allocation_failure_says_so() {
        let crash = report(
            2,
            1,
            exit(None, Some(libc::SIGABRT)),
            Some(CrashFacts {
                kind: CRASH_SIGNAL,
                signal: 6,
                fault_address: 0,
                thread_name: None,
                request: None,
            }),
            lines("memory allocation of 70368744177664 bytes failed"),
        );
        assert_eq!(
            crash.summary(),
            "generation 2 crashed: memory allocation of 70368744177664 bytes failed (killed by SIGABRT (abort))"
        );
    }

    #[test]
    fn exit_and_kill_from_outside() {
        let crash = report(
            4,
            1,
            exit(Some(1), None),
            Some(CrashFacts {
                kind: CRASH_EXIT,
                signal: 0,
                fault_address: 0,
                thread_name: None,
                request: Some("GET /exit".into()),
            }),
            Vec::new(),
        );
        assert_eq!(
            crash.summary(),
            "generation 4 crashed: handler code called exit() (exited with code 1) while running GET /exit"
        );
        let killed = report(5, 1, exit(None, Some(libc::SIGKILL)), None, Vec::new());
        assert_eq!(
            killed.summary(),
            "generation 5 crashed: killed by SIGKILL (the kernel's out-of-memory killer, or killed from outside)"
        );
        let silent = report(6, 1, exit(Some(3), None), None, Vec::new());
        assert_eq!(silent.summary(), "generation 6 crashed: exited with code 3, with no message");
    }

    #[test]
    fn a_double_panic_names_the_panics() {
        let words = lines(
            "thread 'hotswap-g2' panicked at src/lib.rs:10:5:\nfirst\nthread 'hotswap-g2' panicked at src/lib.rs:20:9:\nin drop\nthread caused non-unwinding panic. aborting.",
        );
        let crash = report(2, 1, exit(None, Some(libc::SIGABRT)), None, words);
        assert_eq!(
            crash.cause,
            "thread caused non-unwinding panic. aborting. (killed by SIGABRT (abort))"
        );
        assert_eq!(crash.last_words.len(), 5);
    }
}
