use typed_sessions::Session;

// Forgot `#[derive(SessionSchema)]`.
struct Values {
    user_id: u64,
}

fn handler(_session: Session<Values>) {}

fn main() {}
