//! `confab healthcheck [URL]`: whether a server is ready, as an exit code.

use std::process::ExitCode;

/// `confab healthcheck [URL]`: one HTTP/1.1 GET, 0 for a 200 within the
/// client's timeout.
pub fn run(url: Option<&str>) -> ExitCode {
    let mut url = url.unwrap_or("http://127.0.0.1:8080/readyz").to_owned();
    // A URL without a path asks for readiness.
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    if !rest.contains('/') {
        url.push_str("/readyz");
    }
    match crate::http_client::request("GET", &url, &[], b"", None) {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("confab: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("confab: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}
