use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(default)]
    user_id: u64,
}

fn main() {}
