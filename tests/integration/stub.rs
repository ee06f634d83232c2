//! Tiny misbehaving servers on 127.0.0.1 for the transport and leak tests: one that answers
//! garbage, one that accepts and never answers, one that drips a byte a second, one with a
//! self-signed TLS certificate, and a port where nothing listens. Each runs until the test's
//! runtime ends; only the port leaves.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// `http://127.0.0.1:PORT` of a listener, for `--host`.
pub(crate) fn url_of(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// A loopback port nobody listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Serves every connection accepted on a fresh loopback port with `each`, in its own task.
async fn serve<F, Fut>(each: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(each(stream));
        }
    });
    port
}

/// Reads what the client sent (up to the end of its headers or a pause), so answering does not
/// race the request.
async fn read_request(stream: &mut TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
    {
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
}

/// Answers every request with bytes that are not HTTP, then closes.
pub(crate) async fn garbage_server() -> u16 {
    serve(|mut stream| async move {
        read_request(&mut stream).await;
        let _ = stream
            .write_all(b"\x00\xffSSH-2.0-not-http \x1b[31m}{\r\n\r\n")
            .await;
        let _ = stream.shutdown().await;
    })
    .await
}

/// Accepts connections, reads the request, and never answers nor closes.
pub(crate) async fn silent_server() -> u16 {
    serve(|mut stream| async move {
        read_request(&mut stream).await;
        std::future::pending::<()>().await;
        drop(stream);
    })
    .await
}

/// Answers with a valid status line and headers promising a body, then sends one byte of it
/// per second, forever.
pub(crate) async fn drip_server() -> u16 {
    serve(|mut stream| async move {
        read_request(&mut stream).await;
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        loop {
            if stream.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await
}

/// A TLS server on loopback presenting a fresh self-signed certificate for `localhost`; every
/// handshake is run to its end (the client is expected to refuse it). Returns the port.
pub(crate) fn self_signed_tls_server() -> u16 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server TLS config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let config = config.clone();
            std::thread::spawn(move || {
                let Ok(mut tls) = rustls::ServerConnection::new(config) else {
                    return;
                };
                while tls.is_handshaking() {
                    if tls.complete_io(&mut stream).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}
