//! A minimal HTTP/1.1 GET over a fresh TCP connection: used for readiness
//! checks of replicas and to see when an nginx reload is live. Paths and hosts
//! are validated before they get here (no CR/LF can reach the request line).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest answer read; the rest is ignored.
const MAX_ANSWER: u64 = 16 * 1024;

/// GETs `path` from `addr` with a `Host` header; returns the status code and body.
pub(crate) async fn http_get(
    addr: SocketAddr,
    path: &str,
    host: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    http_get_via(tokio::net::TcpStream::connect(addr), path, host, timeout).await
}

/// Like [`http_get`], over the stream `connect` opens (e.g. through a proxy);
/// `timeout` covers the connect too.
pub(crate) async fn http_get_via<S>(
    connect: impl std::future::Future<Output = std::io::Result<S>>,
    path: &str,
    host: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let io = async {
        let mut stream = connect.await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: dubernetes-probe\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(timeout, io)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer within {timeout:?}")))??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {:?}", head.lines().next().unwrap_or(""))))?;
    Ok((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        let addr = serve_once(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy").await;
        let (status, body) = http_get(addr, "/healthz", "x", Duration::from_secs(2))
            .await
            .expect("get");
        assert_eq!((status, body.as_str()), (503, "busy"));
    }

    #[tokio::test]
    async fn garbage_and_silence_are_errors() {
        let addr = serve_once(b"SSH-2.0-OpenSSH\r\n").await;
        assert!(http_get(addr, "/", "x", Duration::from_secs(2)).await.is_err());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let err = http_get(addr, "/", "x", Duration::from_millis(100))
            .await
            .expect_err("silent");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(listener);
    }
}
