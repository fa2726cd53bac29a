use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(rename = "")]
    user_id: u64,
}

fn main() {}
