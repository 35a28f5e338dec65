//! Gives the allocator's free memory back to the system after a burst.
//!
//! Ten thousand clients connecting at once (a restart, a network blip)
//! allocate, for a moment, the state of ten thousand handshakes and first
//! ops. Once those are done the memory is free in the C allocator's heap
//! but interleaved with the connections' long-lived state, so the heap
//! cannot shrink from its top and the process keeps the pages: measured
//! with 10,000 idle WebSocket connections, about a third of the server's
//! RSS was such free memory. glibc's `malloc_trim` returns the free pages
//! inside the heap too, so every [`CHECK`] the server looks at how much
//! of its heap is free and trims when that is both large and a large part
//! of the heap: after a burst, not while a busy heap churns.
//!
//! Only with glibc; elsewhere this does nothing.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the heap is looked at.
const CHECK: Duration = Duration::from_secs(5);
/// Free memory below this is left alone.
const WORTH_TRIMMING: usize = 8 << 20;

/// Looks at the heap every [`CHECK`] until `stop`, trimming when it pays.
pub(crate) async fn trim_after_bursts(stop: CancellationToken) {
    let mut every = tokio::time::interval(CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        // Both calls take the allocator's locks and walk its free lists:
        // off the runtime's thread.
        let trimmed = tokio::task::spawn_blocking(trim_if_worth_it).await;
        if let Ok(Some((free, took))) = trimmed {
            tracing::debug!(free_bytes = free, ?took, "returned free heap memory to the system");
            metrics::counter!(crate::metrics::HEAP_TRIMS).increment(1);
        }
    }
}

/// Trims when at least [`WORTH_TRIMMING`] bytes and a quarter of the heap
/// are free; the free bytes and how long the trim took, if it did.
fn trim_if_worth_it() -> Option<(usize, Duration)> {
    let (used, free) = sys::heap()?;
    if free < WORTH_TRIMMING || free < (used + free) / 4 {
        return None;
    }
    let started = std::time::Instant::now();
    sys::trim();
    Some((free, started.elapsed()))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod sys {
    /// Bytes in use and bytes free in the allocator's heap (all arenas;
    /// large blocks it maps on their own are not counted: they go back to
    /// the system when freed).
    pub(super) fn heap() -> Option<(usize, usize)> {
        // SAFETY: `mallinfo2` has no preconditions; it returns a plain
        // struct by value.
        let info = unsafe { libc::mallinfo2() };
        Some((info.uordblks, info.fordblks))
    }

    pub(super) fn trim() {
        // SAFETY: `malloc_trim` has no preconditions and may be called at
        // any time from any thread; it only releases free pages.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod sys {
    pub(super) fn heap() -> Option<(usize, usize)> {
        None
    }

    pub(super) fn trim() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_burst_freed_in_the_middle_of_the_heap_is_trimmed() {
        // Many small blocks, every other one kept: the freed half cannot
        // shrink the heap from its top.
        let mut blocks: Vec<Vec<u8>> = (0..40_000).map(|_| vec![1u8; 1000]).collect();
        let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(2).map(std::mem::take).collect();
        drop(blocks);
        let (_, free) = sys::heap().expect("glibc reports its heap");
        assert!(free >= 16 << 20, "the freed half is free heap: {free}");
        let (trimmed, _) = trim_if_worth_it().expect("worth trimming");
        assert!(trimmed >= 16 << 20);
        assert_eq!(kept.len(), 20_000);
        assert!(kept.iter().all(|block| block.iter().all(|&b| b == 1)), "kept blocks intact");
    }
}
