//! The audit log: what an operator must be able to look back on (a
//! message reported by a user), one JSON object a line.
//!
//! Every entry is a line of its own, with `--audit-log FILE`, appended to
//! that file by a task of its own: the op that records it never waits for
//! the disk. The general log gets one line per entry too (target
//! `confab::audit`, at `info`), naming only its kind: an entry may hold a
//! private room's code and a message, which the general log never does. The queue to
//! that task is bounded ([`QUEUE`]); when it is full (a disk that stopped
//! answering) an entry is dropped from the file, counted in
//! `confab_audit_dropped_total` and still logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::metric;

/// Entries waiting for the file at most.
pub const QUEUE: usize = 4096;

/// Where audit entries go. Cheap to clone.
#[derive(Clone, Default)]
pub struct Audit {
    file: Option<Arc<File>>,
}

struct File {
    path: PathBuf,
    queue: mpsc::Sender<String>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.file {
            Some(file) => write!(f, "Audit({})", file.path.display()),
            None => f.write_str("Audit(log only)"),
        }
    }
}

impl Audit {
    /// Appends to `path` (created if missing). Must be called within a
    /// Tokio runtime.
    ///
    /// # Errors
    ///
    /// The file cannot be opened for appending.
    pub async fn open(path: &Path) -> std::io::Result<Audit> {
        let file = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
        let (queue, lines) = mpsc::channel(QUEUE);
        tokio::spawn(append(file, path.to_owned(), lines));
        Ok(Audit { file: Some(Arc::new(File { path: path.to_owned(), queue })) })
    }

    /// The file entries are appended to, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref().map(|f| f.path.as_path())
    }

    /// Records `entry` (an object; its time is added as `ts`, and `kind`).
    pub fn record(&self, kind: &'static str, mut entry: Value) {
        if let Value::Object(fields) = &mut entry {
            fields.insert("kind".to_owned(), json!(kind));
            fields.insert("ts".to_owned(), json!(crate::now_rfc3339()));
        }
        tracing::info!(target: "confab::audit", kind, kept = self.file.is_some(), "audit entry");
        let Some(file) = &self.file else { return };
        let line = entry.to_string();
        if file.queue.try_send(line).is_err() {
            metrics::counter!(metric::AUDIT_DROPPED).increment(1);
            tracing::warn!(
                "audit log {}: {QUEUE} entries wait for the disk; this one is only logged",
                file.path.display()
            );
        }
    }
}

/// Writes the queued lines until every sender is gone, flushing after each
/// run of them.
async fn append(mut file: tokio::fs::File, path: PathBuf, mut lines: mpsc::Receiver<String>) {
    let mut batch = String::new();
    while let Some(line) = lines.recv().await {
        batch.clear();
        batch.push_str(&line);
        batch.push('\n');
        while let Ok(line) = lines.try_recv() {
            batch.push_str(&line);
            batch.push('\n');
        }
        let written = async {
            file.write_all(batch.as_bytes()).await?;
            file.flush().await
        };
        if let Err(e) = written.await {
            tracing::warn!("audit log {}: cannot write: {e}", path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_appended_one_object_a_line_with_their_time() {
        let dir = std::env::temp_dir().join(format!("confab-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        std::fs::write(&path, "{\"kind\":\"earlier\"}\n").unwrap();
        let audit = Audit::open(&path).await.unwrap();
        audit.record("report", json!({"reason": "line\nbreak"}));
        audit.record("report", json!({"n": 2}));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        let lines = loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 3 {
                break text;
            }
            assert!(tokio::time::Instant::now() < deadline, "not written: {text:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let entries: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(entries[0]["kind"], "earlier", "appended, not replaced");
        assert_eq!(entries[1]["reason"], "line\nbreak");
        assert_eq!(entries[1]["kind"], "report");
        assert!(entries[1]["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(entries[2]["n"], 2);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_an_error() {
        let missing = std::env::temp_dir().join("confab-no-such-dir").join("audit.jsonl");
        assert!(Audit::open(&missing).await.is_err());
    }
}
