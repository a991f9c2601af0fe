//! The async client against an in-process server on a real local socket.

use std::path::Path;
use std::time::Duration;

use hotswap_protocol::endpoint::{Endpoint, EndpointEnvironment, current_uid};
use hotswap_protocol::events::{BuildReason, BuildStarted, Event};
use hotswap_protocol::framing::{LineReader, encode_line};
use hotswap_protocol::jsonrpc::{
    ClientMessage, decode_client_message, encode_error, encode_event, encode_result, error_code,
};
use hotswap_protocol::messages::{
    CancelBuild, CancelBuildResult, ClientRequest, InitializeResult, NoParams, Reload,
    ReloadOutcome, ReloadParams, Status, Subscribe, SubscribeResult,
};
use hotswap_protocol::{Client, ClientError, PROTOCOL_VERSION};
use tokio::io::AsyncWriteExt;

fn endpoint_in(directory: &Path) -> Endpoint {
    let environment = EndpointEnvironment {
        runtime_dir: Some(directory.to_path_buf()),
        temp_dir: directory.to_path_buf(),
        uid: current_uid(),
    };
    Endpoint::derive(Path::new("/srv/example"), &environment)
}

/// A tiny daemon stand-in: answers initialize, status (at once), reload (after a delay, to show
/// that requests overlap), subscribe (then sends one event), and errors for bad lines.
async fn serve_one(listener: interprocess::local_socket::tokio::Listener) {
    use interprocess::local_socket::traits::tokio::Listener as _;
    let stream = listener.accept().await.unwrap();
    let (read_half, write_half) = tokio::io::split(stream);
    let writer = std::sync::Arc::new(tokio::sync::Mutex::new(write_half));
    let mut reader = LineReader::new(read_half);
    while let Ok(Some(line)) = reader.next_line().await {
        let line = line.unwrap();
        let writer = writer.clone();
        let send = move |bytes: Vec<u8>| {
            let writer = writer.clone();
            async move {
                let mut out = Vec::new();
                encode_line(&bytes, &mut out);
                writer.lock().await.write_all(&out).await.unwrap();
            }
        };
        match decode_client_message(&line) {
            Err(error) => send(encode_error(error.id.as_ref(), &error.error)).await,
            Ok(ClientMessage::Notification(_)) => {}
            Ok(ClientMessage::Request { id, request }) => match request {
                ClientRequest::Initialize(params) => {
                    assert_eq!(params.protocol_version, PROTOCOL_VERSION);
                    let result = InitializeResult {
                        protocol_version: PROTOCOL_VERSION,
                        daemon_version: "test".into(),
                        pid: std::process::id(),
                        workspace_root: "/srv/example".into(),
                        package: "example".into(),
                        listen_address: "127.0.0.1:1".into(),
                        generation: None,
                    };
                    send(encode_result(Some(&id), &result)).await;
                }
                ClientRequest::Reload(_) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let outcome =
                            ReloadOutcome::Unchanged { generation: Some(1), build_ms: 200.0 };
                        send(encode_result(Some(&id), &outcome)).await;
                    });
                }
                ClientRequest::Subscribe(_) => {
                    send(encode_result(Some(&id), &SubscribeResult { subscribed: true })).await;
                    let event = Event::BuildStarted(BuildStarted {
                        build: 1,
                        reason: BuildReason::Reload,
                        paths: vec![],
                    });
                    send(encode_event(&event)).await;
                }
                ClientRequest::Status(_) => {
                    let error = hotswap_protocol::jsonrpc::ResponseError::new(
                        error_code::INTERNAL_ERROR,
                        "status is not implemented by this stand-in",
                    );
                    send(encode_error(Some(&id), &error)).await;
                }
                ClientRequest::CancelBuild(_) => {
                    send(encode_result(Some(&id), &CancelBuildResult { cancelled: true })).await
                }
                other => panic!("unexpected request {other:?}"),
            },
        }
    }
}

#[tokio::test]
async fn client_talks_to_a_server_over_a_real_socket() {
    let directory = tempfile::tempdir().unwrap();
    let endpoint = endpoint_in(directory.path());
    let listener = hotswap_protocol::transport::listen(&endpoint).unwrap();
    let server = tokio::spawn(serve_one(listener));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(endpoint.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the socket is private to its user");
    }

    let (mut client, initialized) =
        Client::connect_and_initialize(&endpoint, "test").await.unwrap();
    assert_eq!(initialized.package, "example");

    // A slow request does not hold up a fast one on the same connection.
    let started = std::time::Instant::now();
    let (reload, cancel) = tokio::join!(
        client.request::<Reload>(ReloadParams::default()),
        client.request::<CancelBuild>(NoParams {})
    );
    assert!(cancel.unwrap().cancelled);
    assert_eq!(reload.unwrap(), ReloadOutcome::Unchanged { generation: Some(1), build_ms: 200.0 });
    assert!(started.elapsed() >= Duration::from_millis(200));

    // JSON-RPC errors come back as typed errors.
    match client.request::<Status>(NoParams {}).await {
        Err(ClientError::Rpc(error)) => assert_eq!(error.code, error_code::INTERNAL_ERROR),
        other => panic!("expected an RPC error, got {other:?}"),
    }

    // Events arrive after subscribing.
    assert!(client.request::<Subscribe>(NoParams {}).await.unwrap().subscribed);
    let event = tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.unwrap();
    assert!(matches!(event, Some(Event::BuildStarted(BuildStarted { build: 1, .. }))));

    drop(client);
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn no_daemon_is_a_clear_error() {
    let directory = tempfile::tempdir().unwrap();
    let endpoint = endpoint_in(directory.path());
    let error = Client::connect(&endpoint).await.unwrap_err();
    assert!(matches!(error, ClientError::NoDaemon { .. }));
    assert_eq!(
        error.to_string(),
        "no hotswap daemon for /srv/example; start one with `hotswap serve`"
    );
}

#[tokio::test]
async fn a_daemon_that_goes_away_fails_waiting_requests() {
    let directory = tempfile::tempdir().unwrap();
    let endpoint = endpoint_in(directory.path());
    let listener = hotswap_protocol::transport::listen(&endpoint).unwrap();
    let server = tokio::spawn(async move {
        use interprocess::local_socket::traits::tokio::Listener as _;
        let stream = listener.accept().await.unwrap();
        let mut reader = LineReader::new(stream);
        // Read the request, then hang up without answering.
        reader.next_line().await.unwrap();
    });
    let client = Client::connect(&endpoint).await.unwrap();
    let error = client.request::<Reload>(ReloadParams::default()).await.unwrap_err();
    assert!(matches!(error, ClientError::Disconnected), "{error:?}");
    server.await.unwrap();
}
