//! The `extern "C"` functions of the ABI, generic over the app. Each catches panics, so none can
//! unwind into the host.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use super::Handler;
use super::instance::{Host, Instance};
use super::panics::catch;
use crate::abi::{
    ABI_VERSION, ByteSlice, HEADER_SIZE, HandlerFunctions, HandlerHeader, HostCallbacks,
    InitConfig, InitResult, LAYOUT_HASH, MAGIC, OwnedBuffer, PANIC_STRATEGY, SDK_VERSION, TARGET,
    state_policy, status,
};

/// The header `export_handler!` exports for `A`.
pub const fn header<A: Handler>() -> HandlerHeader {
    HandlerHeader {
        magic: MAGIC,
        abi_version: ABI_VERSION,
        header_size: HEADER_SIZE,
        layout_hash: LAYOUT_HASH,
        panic_strategy: PANIC_STRATEGY,
        reserved: 0,
        sdk_version: ByteSlice::from_static(SDK_VERSION.as_bytes()),
        target: ByteSlice::from_static(TARGET.as_bytes()),
        functions: HandlerFunctions {
            init,
            start: start::<A>,
            serve_connection,
            begin_drain,
            export_state,
            hold,
            shutdown,
            free_buffer,
        },
    }
}

fn buffer(bytes: Vec<u8>) -> OwnedBuffer {
    if bytes.is_empty() {
        return OwnedBuffer::EMPTY;
    }
    let mut bytes = std::mem::ManuallyDrop::new(bytes);
    OwnedBuffer { ptr: bytes.as_mut_ptr(), len: bytes.len(), capacity: bytes.capacity() }
}

/// # Safety
/// `out` must be null or writable.
unsafe fn write_message(out: *mut OwnedBuffer, message: String) {
    if !out.is_null() {
        // SAFETY: the caller guarantees `out` is writable.
        unsafe { out.write(buffer(message.into_bytes())) };
    }
}

/// # Safety
/// `instance` must come from `init` of this library and not have been shut down.
unsafe fn instance<'a>(instance: *mut c_void) -> &'a Instance {
    // SAFETY: guaranteed by the caller. Every method used through this reference takes `&self`
    // and synchronises internally, so calls from two host threads (export_state beside the
    // rest, as the ABI allows) are sound.
    unsafe { &*instance.cast::<Instance>() }
}

unsafe extern "C" fn init(
    config: *const InitConfig,
    host: *const HostCallbacks,
    out: *mut InitResult,
) {
    let result = catch(|| {
        // SAFETY: the host passes valid pointers for the duration of the call.
        let (config, host) = unsafe { (*config, *host) };
        // SAFETY: the address bytes live for the call; they are copied.
        let forward = unsafe { config.forward_address.as_bytes() };
        let forward = std::str::from_utf8(forward).ok().and_then(|address| address.parse().ok());
        Instance::create(config, Host::new(host), forward)
    });
    let result = match result {
        Ok(Ok(instance)) => InitResult {
            status: status::OK,
            instance: Box::into_raw(Box::new(instance)).cast(),
            message: OwnedBuffer::EMPTY,
        },
        Ok(Err(message)) => InitResult {
            status: status::FAILED,
            instance: std::ptr::null_mut(),
            message: buffer(message.into_bytes()),
        },
        Err(panic) => InitResult {
            status: status::PANICKED,
            instance: std::ptr::null_mut(),
            message: buffer(format!("init panicked: {panic}").into_bytes()),
        },
    };
    // SAFETY: the host passes a writable `out`.
    unsafe { out.write(result) };
}

unsafe extern "C" fn start<A: Handler>(
    instance_pointer: *mut c_void,
    state: ByteSlice,
    policy: u32,
    message: *mut OwnedBuffer,
) -> u32 {
    let result = catch(|| {
        // SAFETY: per the ABI contract.
        let instance = unsafe { instance(instance_pointer) };
        // SAFETY: the host's state bytes live for the call.
        let bytes = unsafe { state.as_bytes() };
        let (state, warning) = match super::state::import::<A>(bytes) {
            Ok(state) => (state, None),
            // The problem as JSON, so the daemon can point at the struct in the code.
            Err(problem) if policy == state_policy::REJECT => {
                return (status::FAILED, Some(problem.to_json()));
            }
            Err(problem) => (A::State::default(), Some(problem.message)),
        };
        if instance.app.get().is_some() {
            return (status::FAILED, Some("the app was already started".to_owned()));
        }
        let app = match instance.runtime().block_on(A::create(state)) {
            Ok(app) => app,
            Err(error) => {
                return (
                    status::FAILED_TO_START,
                    Some(format!("the app's set-up failed: {error}")),
                );
            }
        };
        let _ = instance.app.set(Arc::new(app));
        match warning {
            Some(reason) => (status::STARTED_FRESH, Some(reason)),
            None => (status::OK, None),
        }
    });
    let (code, text) = match result {
        Ok(outcome) => outcome,
        Err(panic) => {
            let hint = if panic.contains("global default") {
                " (hotswap sets up `tracing` for each generation and sends its lines to the \
                 hotswap log, with `RUST_LOG` or `[log] filter`: initialise your own subscriber \
                 in `main` only, for the binary you run without hotswap)"
            } else {
                ""
            };
            (status::PANICKED, Some(format!("the app panicked while starting: {panic}{hint}")))
        }
    };
    if let Some(text) = text {
        // SAFETY: the host passes a writable `message`.
        unsafe { write_message(message, text) };
    }
    code
}

unsafe extern "C" fn serve_connection(
    instance_pointer: *mut c_void,
    socket: i64,
    unread: ByteSlice,
) -> u32 {
    let result = catch(|| {
        let stream = adopt_socket(socket);
        stream.set_nonblocking(true).ok();
        // SAFETY: the host's bytes live for the call; they are copied.
        let unread = bytes::Bytes::copy_from_slice(unsafe { unread.as_bytes() });
        // SAFETY: per the ABI contract.
        let instance = unsafe { instance(instance_pointer) };
        if instance.serve(stream, unread) { status::OK } else { status::FAILED }
    });
    result.unwrap_or(status::PANICKED)
}

#[cfg(unix)]
fn adopt_socket(socket: i64) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: the host transfers ownership of an open TCP socket descriptor.
    unsafe { std::net::TcpStream::from_raw_fd(socket as std::os::fd::RawFd) }
}

#[cfg(windows)]
fn adopt_socket(socket: i64) -> std::net::TcpStream {
    use std::os::windows::io::FromRawSocket;
    // SAFETY: the host transfers ownership of an open TCP socket.
    unsafe { std::net::TcpStream::from_raw_socket(socket as u64) }
}

unsafe extern "C" fn begin_drain(
    instance_pointer: *mut c_void,
    purge_after_ms: u64,
    streams_after_ms: u64,
) {
    let _ = catch(|| {
        // SAFETY: per the ABI contract.
        let instance = unsafe { instance(instance_pointer) };
        instance.begin_drain(
            Duration::from_millis(purge_after_ms),
            Duration::from_millis(streams_after_ms),
        );
    });
}

unsafe extern "C" fn hold(instance_pointer: *mut c_void, on: u32, timeout_ms: u64) -> u64 {
    let result = catch(|| {
        // SAFETY: per the ABI contract.
        let instance = unsafe { instance(instance_pointer) };
        instance.hold(on != 0, Duration::from_millis(timeout_ms)) as u64
    });
    result.unwrap_or(0)
}

unsafe extern "C" fn export_state(instance_pointer: *mut c_void, out: *mut OwnedBuffer) -> u32 {
    let result = catch(|| {
        // SAFETY: per the ABI contract.
        let instance = unsafe { instance(instance_pointer) };
        let Some(app) = instance.app.get().cloned() else { return Ok(None) };
        let _context = instance.runtime().enter();
        app.export_state_envelope()
    });
    let (code, bytes) = match result {
        Ok(Ok(Some(bytes))) => (status::OK, bytes),
        Ok(Ok(None)) => (status::OK, Vec::new()),
        Ok(Err(message)) => (status::FAILED, message.into_bytes()),
        Err(panic) => (status::PANICKED, format!("export_state panicked: {panic}").into_bytes()),
    };
    // SAFETY: the host passes a writable `out`.
    unsafe { out.write(buffer(bytes)) };
    code
}

unsafe extern "C" fn shutdown(
    instance_pointer: *mut c_void,
    timeout_ms: u64,
    message: *mut OwnedBuffer,
) -> u32 {
    let result = catch(|| {
        // SAFETY: per the ABI contract; the host never uses the instance after this call.
        let instance = unsafe { Box::from_raw(instance_pointer.cast::<Instance>()) };
        instance.shutdown(Duration::from_millis(timeout_ms))
    });
    let (code, text) = match result {
        Ok(Ok(())) => (status::OK, None),
        Ok(Err(reason)) => (status::THREADS_LEFT, Some(reason)),
        Err(panic) => (status::PANICKED, Some(format!("shutdown panicked: {panic}"))),
    };
    if let Some(text) = text {
        // SAFETY: the host passes a writable `message`.
        unsafe { write_message(message, text) };
    }
    code
}

unsafe extern "C" fn free_buffer(buffer: OwnedBuffer) {
    if !buffer.ptr.is_null() {
        // SAFETY: the buffer was made by `buffer()` above from a Vec of this library.
        drop(unsafe { Vec::from_raw_parts(buffer.ptr, buffer.len, buffer.capacity) });
    }
}
