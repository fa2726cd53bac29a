use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
#[session(rename_all = "camelCase")]
struct Values {
    #[session(rename = "userId")]
    id: u64,
    user_id: u64,
}

fn main() {}
