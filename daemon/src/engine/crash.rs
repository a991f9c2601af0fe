//! Telling how a generation died: from its exit status, the record its host wrote in the shared
//! page, and the last lines of its stderr (where Rust's runtime says "has overflowed its stack",
//! "memory allocation of N bytes failed", or what panicked while panicking).

use hotswap_protocol::control::{CRASH_EXIT, CRASH_STACK_OVERFLOW, CrashFacts};

use super::host_process::{HostExit, signal_description};

/// "SIGSEGV", "SIGABRT", or "signal 40".
fn signal_name(signal: i32) -> String {
    let description = signal_description(signal);
    description.split(' ').next().unwrap_or(&description).to_owned()
}

/// A line of a backtrace Rust printed (kept out of a crash's last words, which it would flood).
pub fn is_backtrace_line(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed == "stack backtrace:"
        || trimmed.starts_with("at ") && line.starts_with("    ")
        || trimmed.starts_with("note: Some details are omitted")
        || trimmed.starts_with("note: run with `RUST_BACKTRACE=1`")
        || trimmed.split_once(": ").is_some_and(|(number, _)| {
            !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
        }) && line.starts_with(' ')
}

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
    panics: Vec<String>,
    words: Vec<String>,
) -> CrashReport {
    let how = match (exit.code, exit.signal) {
        (None, Some(signal)) if signal != libc::SIGKILL => {
            format!("killed by {}", signal_name(signal))
        }
        _ => exit.describe(),
    };
    let thread = facts.as_ref().and_then(|facts| facts.thread_name.clone());
    let telling =
        telling_line(&words).filter(|line| !line.starts_with("hotswap host: fatal signal"));
    let cause = match &facts {
        Some(facts) if facts.kind == CRASH_STACK_OVERFLOW => {
            format!("stack overflow in thread '{}' ({how})", thread.as_deref().unwrap_or("unnamed"))
        }
        Some(facts) if facts.kind == CRASH_EXIT => {
            format!("handler code called exit() ({how})")
        }
        _ => match telling {
            Some(line) => {
                let line = line.trim_start_matches("fatal runtime error: ").to_owned();
                format!("{line} ({how})")
            }
            None => match (exit.signal, &facts) {
                (Some(libc::SIGSEGV | libc::SIGBUS), Some(facts)) => {
                    format!("invalid memory access at address {:#x} ({how})", facts.fault_address)
                }
                (Some(libc::SIGABRT), _) => format!("the process aborted ({how})"),
                (Some(libc::SIGKILL), _) => how.clone(),
                _ => format!("{how}, with no message"),
            },
        },
    };
    // A panic while panicking: the panics' own messages say what happened.
    let double_panic = words.iter().any(|line| {
        line.contains("panic in a destructor during cleanup")
            || line.contains("thread caused non-unwinding panic")
            || line.contains("panicked while processing panic")
    });
    let mut words = words;
    let mut cause = cause;
    if double_panic {
        // The panic that started it, not std's own "panic in a destructor during cleanup".
        if let Some(first) =
            panics.iter().find(|panic| !panic.contains("/library/core/src/panicking.rs"))
        {
            cause = format!("a panic while panicking, after the panic at {first} ({how})");
        }
        let mut with_panics: Vec<String> =
            panics.into_iter().map(|panic| format!("panicked at {panic}")).collect();
        with_panics.append(&mut words);
        words = with_panics;
    }
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
            vec!["src/lib.rs:1:1: an earlier panic, answered 500".into()],
            lines(
                "\nthread 'hotswap-g3' has overflowed its stack\nfatal runtime error: stack overflow\nhotswap host: the thread was running GET /deep",
            ),
        );
        assert_eq!(
            crash.summary(),
            "generation 3 crashed: stack overflow in thread 'hotswap-g3' (killed by SIGSEGV) while running GET /deep"
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
            Vec::new(),
            lines("memory allocation of 70368744177664 bytes failed"),
        );
        assert_eq!(
            crash.summary(),
            "generation 2 crashed: memory allocation of 70368744177664 bytes failed (killed by SIGABRT)"
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
            Vec::new(),
        );
        assert_eq!(
            crash.summary(),
            "generation 4 crashed: handler code called exit() (exited with code 1) while running GET /exit"
        );
        let killed = report(5, 1, exit(None, Some(libc::SIGKILL)), None, Vec::new(), Vec::new());
        assert_eq!(
            killed.summary(),
            "generation 5 crashed: killed by SIGKILL (the kernel's out-of-memory killer, or killed from outside)"
        );
        let silent = report(6, 1, exit(Some(3), None), None, Vec::new(), Vec::new());
        assert_eq!(silent.summary(), "generation 6 crashed: exited with code 3, with no message");
    }

    #[test]
    fn a_null_write_names_the_address_and_a_plain_abort_says_so() {
        let facts = |signal: u32| CrashFacts {
            kind: CRASH_SIGNAL,
            signal,
            fault_address: 0,
            thread_name: None,
            request: Some("GET /null".into()),
        };
        let words =
            lines("hotswap host: fatal signal SIGSEGV (invalid memory access) at address 0x0");
        let crash =
            report(7, 1, exit(None, Some(libc::SIGSEGV)), Some(facts(11)), Vec::new(), words);
        assert_eq!(
            crash.summary(),
            "generation 7 crashed: invalid memory access at address 0x0 (killed by SIGSEGV) while running GET /null"
        );
        let words = lines("hotswap host: fatal signal SIGABRT (abort)");
        let crash =
            report(8, 1, exit(None, Some(libc::SIGABRT)), Some(facts(6)), Vec::new(), words);
        assert_eq!(crash.cause, "the process aborted (killed by SIGABRT)");
    }

    #[test]
    fn backtrace_lines_are_recognised() {
        for line in [
            "stack backtrace:",
            "   0: __rustc::rust_begin_unwind",
            "  12: tokio::runtime::task::raw::poll",
            "             at /rustc/abc/library/std/src/panicking.rs:689:5",
            "note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
        ] {
            assert!(is_backtrace_line(line), "{line}");
        }
        for line in [
            "memory allocation of 70368744177664 bytes failed",
            "thread 'hotswap-g3' has overflowed its stack",
            "listening at 127.0.0.1:3000",
            "200: ok",
        ] {
            assert!(!is_backtrace_line(line), "{line}");
        }
    }

    #[test]
    fn a_double_panic_names_the_panics() {
        let panics =
            vec!["src/lib.rs:10:5: first".to_owned(), "src/lib.rs:20:9: in drop".to_owned()];
        let words = lines("thread caused non-unwinding panic. aborting.");
        let crash = report(2, 1, exit(None, Some(libc::SIGABRT)), None, panics, words);
        assert_eq!(
            crash.cause,
            "a panic while panicking, after the panic at src/lib.rs:10:5: first (killed by SIGABRT)"
        );
        assert_eq!(
            crash.last_words,
            [
                "panicked at src/lib.rs:10:5: first",
                "panicked at src/lib.rs:20:9: in drop",
                "thread caused non-unwinding panic. aborting."
            ]
        );
    }
}
