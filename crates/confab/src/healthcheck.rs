//! `confab healthcheck [URL]`: whether a server is ready, as an exit code.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConnection, StreamOwned};

/// `confab healthcheck [URL]`: one HTTP/1.1 GET, 0 for a 200 within 5 s.
pub fn run(url: Option<&str>) -> ExitCode {
    let url = url.unwrap_or("http://127.0.0.1:8080/readyz");
    match probe(url) {
        Ok(200) => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("confab: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("confab: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn probe(url: &str) -> Result<u16, String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err("expected http(s)://HOST:PORT/PATH (a check runs beside the server, \
                        on loopback)"
                .to_owned());
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/readyz"),
    };
    let with_port = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let timeout = std::time::Duration::from_secs(5);
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("the host has no address")?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut stream: Box<dyn ReadWrite> =
        if tls { Box::new(tls_to(host_of(authority), tcp)?) } else { Box::new(tcp) };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| format!("no answer: {e}"))?;
    let status = std::str::from_utf8(&head[9..12]).ok().and_then(|s| s.parse().ok());
    match (&head[..5], status) {
        (b"HTTP/", Some(status)) => Ok(status),
        _ => Err("not an HTTP answer".to_owned()),
    }
}

/// The host of `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A TLS client for the health check. It runs beside the server and asks
/// whether the server answers, not who it is: the certificate is not
/// checked against a trust store (the server's may be self-signed, or
/// named for its public address), but the handshake's signatures are.
fn tls_to(host: &str, tcp: TcpStream) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let connection = ClientConnection::new(Arc::new(crate::unchecked_tls::config()), name)
        .map_err(|e| e.to_string())?;
    Ok(StreamOwned::new(connection, tcp))
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
}
