use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
    #[session(rename = "user_id")]
    impersonated_user_id: u64,
}

fn main() {}
