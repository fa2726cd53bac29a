use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values(u64, String);

fn main() {}
