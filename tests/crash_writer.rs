//! The child process of `tests/crash_safety.rs`: writes sessions to the store named by its
//! argument (`sqlite:<file>` or `file:<dir>`) until it is killed.

fn main() {
    let spec = std::env::args()
        .nth(1)
        .expect("usage: crash-writer sqlite:<file> | file:<dir>");
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(typed_sessions_tests::crash::write_until_killed(&spec));
}
