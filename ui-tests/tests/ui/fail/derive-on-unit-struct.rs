use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct NoFlash;

fn main() {}
