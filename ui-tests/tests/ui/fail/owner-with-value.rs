use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(owner = "user")]
    user_id: u64,
}

fn main() {}
