use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(rename = uid)]
    user_id: u64,
}

fn main() {}
