//! A small blocking HTTP/1.1 client for the commands that speak to a
//! server beside them (`healthcheck`, `admin`): one request a connection,
//! `http://` or `https://` (the certificate is not checked against a trust
//! store, see `unchecked_tls`), answers read to their end.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConnection, StreamOwned};

/// How long a request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of an answer read.
const ANSWER_MAX: u64 = 16 * 1024 * 1024;

/// One request: `method` on `url` with `headers` and `body`; the answer's
/// status and body. `https://` speaks TLS with `tls`, or, without it,
/// checks the handshake's signatures but not the certificate's trust (for
/// a check beside the server).
///
/// # Errors
///
/// The URL, the connection, or an answer that is not HTTP, in words.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    tls_config: Option<Arc<rustls::ClientConfig>>,
) -> Result<(u16, Vec<u8>), String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err("expected http(s)://HOST:PORT/PATH".to_owned()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> =
        if tls { Box::new(tls_to(host_of(authority), tcp, tls_config)?) } else { Box::new(tcp) };
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    stream.write_all(body).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    // A TLS peer that closes without close_notify still said it all.
    if let Err(e) = stream.take(ANSWER_MAX).read_to_end(&mut answer)
        && answer.is_empty()
    {
        return Err(format!("no answer: {e}"));
    }
    parse(&answer)
}

/// The status and body of an answer read to its end.
fn parse(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let status = answer
        .get(..12)
        .filter(|head| head.starts_with(b"HTTP/"))
        .and_then(|head| std::str::from_utf8(&head[9..12]).ok())
        .and_then(|s| s.parse().ok())
        .ok_or("not an HTTP answer")?;
    let split =
        answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("an answer without a body")?;
    let head = String::from_utf8_lossy(&answer[..split]).to_ascii_lowercase();
    let mut body = answer[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        body = unchunk(&body)?;
    }
    Ok((status, body))
}

/// A chunked body's data.
fn unchunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut data = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").ok_or("a cut chunk")?;
        let size = std::str::from_utf8(&body[..line])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok());
        let size = size.ok_or("a chunk without its size")?;
        if size == 0 {
            return Ok(data);
        }
        let start = line + 2;
        data.extend_from_slice(body.get(start..start + size).ok_or("a cut chunk")?);
        body = body.get(start + size + 2..).ok_or("a cut chunk")?;
    }
}

/// The host of `host`, `host:port`, `[v6]` or `[v6]:port`.
pub fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// TLS over `tcp` with `config`; without it, a client that checks the
/// handshake's signatures but not the certificate's trust: it runs beside
/// the server (whose certificate may be self-signed, or named for its
/// public address).
fn tls_to(
    host: &str,
    tcp: TcpStream,
    config: Option<Arc<rustls::ClientConfig>>,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let config = config.unwrap_or_else(|| Arc::new(crate::unchecked_tls::config()));
    let connection = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    Ok(StreamOwned::new(connection, tcp))
}

/// The TLS client for `server`: `None` for `http://`; for `https://`, one
/// that checks the certificate against `ca` or the system's bundle (or,
/// `insecure`, not at all), speaking HTTP/1.1.
///
/// # Errors
///
/// A CA file or bundle that cannot be read, in words.
pub fn tls_for(
    server: &str,
    ca: Option<&std::path::Path>,
    insecure: bool,
) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    if !server.starts_with("https://") {
        return Ok(None);
    }
    let mut config = crate::connect::client_config(ca, insecure)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_host_of_an_authority() {
        for (authority, host) in [
            ("localhost", "localhost"),
            ("localhost:8443", "localhost"),
            ("127.0.0.1:443", "127.0.0.1"),
            ("[::1]", "::1"),
            ("[::1]:8443", "::1"),
        ] {
            assert_eq!(super::host_of(authority), host);
        }
    }

    #[test]
    fn answers_are_read_plain_and_chunked() {
        let plain = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(super::parse(plain).unwrap(), (404, b"{}".to_vec()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(super::parse(chunked).unwrap(), (200, b"abcde".to_vec()));
        assert!(super::parse(b"SSH-2.0").is_err());
    }
}
