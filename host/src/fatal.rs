//! Last words: what a host writes when handler code kills it, so the daemon can say how it died.
//!
//! A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP) runs [`on_fatal_signal`] on
//! the thread's alternate signal stack: it writes a [`CrashRecord`] into the shared counters page
//! (the request the thread was running, the thread's name, a stack overflow recognised by its
//! guard page) and a line to stderr, then lets the signal kill the process. A call of `exit` by
//! handler code is recorded by an `atexit` hook the same way. Only atomic stores and `write(2)`
//! happen in the handler: nothing there allocates or takes a lock.
//!
//! Rust's own stack overflow message does not reach a handler library's threads (the library has
//! its own copy of std, which never set up its overflow handler), so the host recognises the
//! overflow itself: each thread the library starts reports itself through the ABI's
//! `thread_started`, and the host records its stack's guard page and gives it an alternate signal
//! stack there.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use hotswap_protocol::control::{CRASH_EXIT, CRASH_SIGNAL, CRASH_STACK_OVERFLOW, CrashRecord};

use crate::requests::RequestRecord;

/// Where the crash record lives (the shared page), set once at start.
static CRASH: AtomicPtr<CrashRecord> = AtomicPtr::new(std::ptr::null_mut());

/// Size of each alternate signal stack.
const ALTERNATE_STACK_BYTES: usize = 64 * 1024;

/// What the signal handler needs to know about the thread it runs on.
#[derive(Clone, Copy)]
struct ThreadFacts {
    /// The guard region below the stack: a fault in it is a stack overflow.
    guard_low: usize,
    guard_high: usize,
    alternate_stack: usize,
    name: [u8; 32],
    name_length: usize,
}

impl ThreadFacts {
    const UNKNOWN: ThreadFacts = ThreadFacts {
        guard_low: 0,
        guard_high: 0,
        alternate_stack: 0,
        name: [0; 32],
        name_length: 0,
    };
}

thread_local! {
    // Const-initialised and without destructors: they live in the executable's static TLS block,
    // which a signal handler may read.
    static THREAD: Cell<ThreadFacts> = const { Cell::new(ThreadFacts::UNKNOWN) };
    static CURRENT_REQUEST: Cell<*const RequestRecord> = const { Cell::new(std::ptr::null()) };
}

/// Installs the handlers; `crash` must live for the rest of the process.
pub(crate) fn install(crash: &'static CrashRecord) {
    CRASH.store(std::ptr::from_ref(crash).cast_mut(), Ordering::SeqCst);
    thread_started();
    for signal in
        [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGABRT, libc::SIGTRAP]
    {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler is an
        // `extern "C"` function of the right signature for SA_SIGINFO.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_fatal_signal as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: registering a function with the C runtime; it runs at `exit`.
    unsafe { libc::atexit(on_exit) };
}

/// Records the calling thread's stack and gives it an alternate signal stack, so that a stack
/// overflow on it can be recognised and reported.
pub(crate) fn thread_started() {
    let mut facts = ThreadFacts::UNKNOWN;
    // SAFETY: standard pthread calls on the calling thread with out-pointers to locals.
    unsafe {
        let mut attributes: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attributes) == 0 {
            let mut stack_low: *mut c_void = std::ptr::null_mut();
            let mut stack_size = 0usize;
            let mut guard_size = 0usize;
            libc::pthread_attr_getstack(&attributes, &mut stack_low, &mut stack_size);
            libc::pthread_attr_getguardsize(&attributes, &mut guard_size);
            libc::pthread_attr_destroy(&mut attributes);
            let page = page_size();
            let guard = guard_size.max(page);
            facts.guard_low = (stack_low as usize).saturating_sub(guard);
            // A page into the stack too: the first touch below the last usable page.
            facts.guard_high = stack_low as usize + page;
        }
        let mut name = [0 as libc::c_char; 32];
        if libc::pthread_getname_np(libc::pthread_self(), name.as_mut_ptr(), name.len()) == 0 {
            let bytes: Vec<u8> =
                name.iter().take_while(|&&byte| byte != 0).map(|&byte| byte as u8).collect();
            facts.name[..bytes.len()].copy_from_slice(&bytes);
            facts.name_length = bytes.len();
        }
        let stack = libc::mmap(
            std::ptr::null_mut(),
            ALTERNATE_STACK_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if stack != libc::MAP_FAILED {
            let alternate =
                libc::stack_t { ss_sp: stack, ss_flags: 0, ss_size: ALTERNATE_STACK_BYTES };
            if libc::sigaltstack(&alternate, std::ptr::null_mut()) == 0 {
                facts.alternate_stack = stack as usize;
            } else {
                libc::munmap(stack, ALTERNATE_STACK_BYTES);
            }
        }
    }
    THREAD.with(|thread| thread.set(facts));
}

/// Undoes [`thread_started`] on a thread that ends.
pub(crate) fn thread_stopped() {
    let facts = THREAD.with(|thread| thread.replace(ThreadFacts::UNKNOWN));
    if facts.alternate_stack != 0 {
        // SAFETY: disabling this thread's alternate stack, then unmapping the memory we mapped
        // for it (no signal handler can be running on it: we are on the thread's own stack).
        unsafe {
            let disabled = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            libc::sigaltstack(&disabled, std::ptr::null_mut());
            libc::munmap(facts.alternate_stack as *mut c_void, ALTERNATE_STACK_BYTES);
        }
    }
}

/// The request the calling thread runs from now on (null: none).
pub(crate) fn set_current_request(record: *const RequestRecord) {
    CURRENT_REQUEST.with(|current| current.set(record));
}

/// The request the calling thread runs, as `METHOD /target`.
pub(crate) fn current_request() -> Option<String> {
    let record = CURRENT_REQUEST.with(Cell::get);
    // SAFETY: a record stays alive while a thread runs its request (the request cannot finish
    // while its handler is being polled on this very thread).
    (!record.is_null()).then(|| unsafe { (*record).text.clone() })
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// The request bytes of the calling thread, without allocating.
fn current_request_bytes() -> &'static [u8] {
    let record = CURRENT_REQUEST.with(Cell::get);
    if record.is_null() {
        return &[];
    }
    // SAFETY: as in `current_request`; the process ends right after this is read.
    unsafe { (*record).text.as_bytes() }
}

fn write_stderr(bytes: &[u8]) {
    // SAFETY: write(2) on stderr is async-signal-safe; a short or failed write is acceptable.
    unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
}

fn signal_name(signal: libc::c_int) -> &'static [u8] {
    match signal {
        libc::SIGSEGV => b"SIGSEGV (invalid memory access)",
        libc::SIGBUS => b"SIGBUS (bus error)",
        libc::SIGILL => b"SIGILL (illegal instruction)",
        libc::SIGFPE => b"SIGFPE (arithmetic error)",
        libc::SIGABRT => b"SIGABRT (abort)",
        libc::SIGTRAP => b"SIGTRAP (trap)",
        _ => b"a fatal signal",
    }
}

/// Formats `value` as `0x…` into `out`, returning the bytes used.
fn hex(value: usize, out: &mut [u8; 18]) -> &[u8] {
    out[0] = b'0';
    out[1] = b'x';
    let mut digits = [0u8; 16];
    let mut length = 0;
    let mut rest = value;
    loop {
        digits[length] = b"0123456789abcdef"[rest & 0xf];
        length += 1;
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    for index in 0..length {
        out[2 + index] = digits[length - 1 - index];
    }
    &out[..2 + length]
}

extern "C" fn on_fatal_signal(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut c_void) {
    let facts = THREAD.with(Cell::get);
    let address = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        unsafe { (*info).si_addr() as usize }
    };
    let overflow = signal == libc::SIGSEGV
        && facts.guard_high != 0
        && address >= facts.guard_low
        && address < facts.guard_high;
    let name = &facts.name[..facts.name_length];
    let request = current_request_bytes();
    let crash = CRASH.load(Ordering::SeqCst);
    if !crash.is_null() {
        let kind = if overflow { CRASH_STACK_OVERFLOW } else { CRASH_SIGNAL };
        // SAFETY: the record lives in the shared page for the rest of the process.
        unsafe { (*crash).write(kind, signal as u32, address as u64, name, request) };
    }
    if overflow {
        // The words Rust's runtime uses, so that people (and tools) recognise them.
        write_stderr(b"\nthread '");
        write_stderr(if name.is_empty() { b"<unnamed>" } else { name });
        write_stderr(b"' has overflowed its stack\nfatal runtime error: stack overflow\n");
    } else {
        let mut buffer = [0u8; 18];
        write_stderr(b"hotswap host: fatal signal ");
        write_stderr(signal_name(signal));
        if matches!(signal, libc::SIGSEGV | libc::SIGBUS) {
            write_stderr(b" at address ");
            write_stderr(hex(address, &mut buffer));
        }
        write_stderr(b"\n");
    }
    if !request.is_empty() {
        write_stderr(b"hotswap host: the thread was running ");
        write_stderr(request);
        write_stderr(b"\n");
    }
    // SA_RESETHAND restored the default action: returning re-runs the faulting instruction (or
    // lets abort() raise again), and the signal ends the process.
}

extern "C" fn on_exit() {
    let crash = CRASH.load(Ordering::SeqCst);
    let request = current_request_bytes();
    let facts = THREAD.with(Cell::get);
    if !crash.is_null() {
        // SAFETY: as in the signal handler.
        unsafe { (*crash).write(CRASH_EXIT, 0, 0, &facts.name[..facts.name_length], request) };
    }
    write_stderr(b"hotswap host: handler code called exit()");
    if !request.is_empty() {
        write_stderr(b" while running ");
        write_stderr(request);
    }
    write_stderr(b"\n");
}

#[cfg(test)]
mod tests {
    use super::hex;

    #[test]
    fn hex_formats_addresses() {
        let mut buffer = [0u8; 18];
        assert_eq!(hex(0, &mut buffer), b"0x0");
        assert_eq!(hex(0xdead_beef, &mut buffer), b"0xdeadbeef");
        assert_eq!(hex(usize::MAX, &mut buffer), b"0xffffffffffffffff");
    }
}
