//! Opening the local socket of an [`Endpoint`], on both sides, through `interprocess`.

use std::io;

use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::{GenericFilePath, ListenerOptions, Name};

use crate::endpoint::Endpoint;

fn socket_name(endpoint: &Endpoint) -> io::Result<Name<'_>> {
    endpoint.path().to_fs_name::<GenericFilePath>()
}

/// Connects to the daemon of `endpoint`. A missing socket or one nobody listens on gives an error
/// of kind `NotFound` or `ConnectionRefused`.
pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
    Stream::connect(socket_name(endpoint)?).await
}

/// Listens on `endpoint`: creates its private directory, then a socket with mode 0600 that is
/// removed again when the listener is dropped. Fails with `AddrInUse` if the socket file exists;
/// the caller decides whether it is stale.
pub fn listen(endpoint: &Endpoint) -> io::Result<Listener> {
    endpoint.prepare_directory()?;
    let options = ListenerOptions::new().name(socket_name(endpoint)?).reclaim_name(true);
    #[cfg(unix)]
    let options = {
        use interprocess::os::unix::local_socket::ListenerOptionsExt;
        options.mode(0o600)
    };
    options.create_tokio()
}

/// The user id of the process at the other end of `stream`, where the platform tells it.
pub fn peer_uid(stream: &Stream) -> io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        Ok(stream.peer_creds()?.euid())
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        Ok(None)
    }
}
