//! The `charcha` server binary.
//!
//! `charcha` (or `charcha serve`) runs the web server, WebSocket gateway and,
//! by default, the history worker. See README for configuration.

/// mimalloc instead of glibc's malloc: the send path allocates small,
/// short-lived buffers on every thread, and profiles showed glibc's arena
/// bookkeeping (malloc_consolidate, unlink_chunk) at ~12 % of server CPU.
/// The `system-allocator` feature keeps glibc's, for heap profilers that
/// hook malloc (heaptrack: BENCHMARKS.md, "Connections").
#[cfg(all(feature = "ssr", not(feature = "system-allocator")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "ssr")]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    charcha::server::cli_main(std::env::args().skip(1).collect()).await
}

#[cfg(not(feature = "ssr"))]
pub fn main() {
    // The binary is only built with `ssr`; the wasm client starts in `lib.rs`.
}
