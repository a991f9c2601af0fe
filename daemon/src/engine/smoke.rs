//! The smoke request: before a new generation is published, one real HTTP request over loopback
//! must answer 2xx, or the swap is refused and the old generation keeps serving.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::generation::Generation;

/// Sends `GET path` to `generation` and returns `Err` with what went wrong unless it answers 2xx.
pub(super) async fn check(
    generation: &Generation,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|error| format!("cannot open a loopback socket for the smoke request: {error}"))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    let (client, accepted) =
        tokio::join!(tokio::net::TcpStream::connect(address), listener.accept());
    let mut client =
        client.map_err(|error| format!("smoke request: cannot connect over loopback: {error}"))?;
    let (server_side, _) =
        accepted.map_err(|error| format!("smoke request: accept failed: {error}"))?;
    let server_side = server_side.into_std().map_err(|error| error.to_string())?;
    // The request goes with the socket, as bytes already read from it: the generation starts
    // on it at once instead of waiting to be told the socket is readable.
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nuser-agent: hotswap-smoke\r\nconnection: close\r\n\r\n"
    );
    if !generation.serve(OwnedFd::from(server_side), request.as_bytes()).await {
        return Err("the new generation's process is gone".to_owned());
    }
    let exchange = async {
        let mut response = Vec::new();
        (&mut client).take(64 * 1024).read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return Err(format!("GET {path} failed: {error}")),
        Err(_) => {
            return Err(format!("GET {path} did not answer within {} ms", timeout.as_millis()));
        }
    };
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).and_then(|code| code.parse::<u16>().ok());
    match code {
        Some(200..=299) => Ok(()),
        Some(_) => {
            let body = text.split_once("\r\n\r\n").map(|(_, body)| body.trim()).unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            let status =
                status_line.split_once(' ').map(|(_, status)| status).unwrap_or(status_line);
            if body.is_empty() {
                Err(format!("GET {path} answered {status}"))
            } else {
                Err(format!("GET {path} answered {status}: {body}"))
            }
        }
        None => Err(format!("GET {path} did not answer with HTTP (got {:?})", status_line)),
    }
}
