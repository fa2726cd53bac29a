#![deny(unused_must_use)]

use std::sync::Arc;
use std::time::Duration;

use typed_sessions::store::spawn_sweeper;
use typed_sessions::MemoryStore;

async fn serve(store: Arc<MemoryStore>) {
    // Written as a statement, the sweeper would be dropped, and stopped, at once.
    spawn_sweeper(store, Duration::from_secs(300));
}

fn main() {
    let _ = serve;
}
