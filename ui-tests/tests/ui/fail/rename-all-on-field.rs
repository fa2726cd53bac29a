use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(rename_all = "camelCase")]
    user_id: u64,
}

fn main() {}
