//! Whether a process still runs: the editor's (`processId` of `initialize`), so that the server
//! stops when its editor died without closing the stream, and the daemon that `autoStart` started.

/// True while the process `pid` exists and is not a zombie. Where that cannot be checked, true.
pub(crate) fn process_is_running(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        // SAFETY: signal 0 sends nothing; kill only checks that the process exists.
        let result = unsafe { libc::kill(pid, 0) };
        if result != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return false;
        }
        // A process that died but was not reaped yet still exists for kill(2); on Linux its
        // state in /proc tells.
        !is_zombie(pid)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(unix)]
fn is_zombie(pid: libc::pid_t) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state is the first field after the command name, which is in parentheses and may
    // itself contain spaces or parentheses.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, Some("Z" | "X"))
}

/// Asks the process `pid` to stop (SIGTERM), as a terminal's Ctrl-C would.
pub(crate) fn ask_process_to_stop(pid: u32) {
    #[cfg(unix)]
    {
        if let Ok(pid) = libc::pid_t::try_from(pid) {
            // SAFETY: sending SIGTERM to a child of ours has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_running_child_runs_and_a_reaped_one_does_not() {
        let mut child =
            std::process::Command::new("cat").stdin(std::process::Stdio::piped()).spawn().unwrap();
        assert!(process_is_running(child.id()));
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(!process_is_running(child.id()));
        assert!(process_is_running(std::process::id()));
    }
}
