use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(rename = "uid")]
    #[session(rename = "userId")]
    user_id: u64,
}

fn main() {}
