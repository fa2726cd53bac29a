use std::cell::Cell;
use typed_sessions::SessionSchema;

// Sessions cross threads: `Cell` is not `Sync`.
#[derive(SessionSchema)]
struct Values {
    visits: Cell<u32>,
}

fn main() {}
