use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
#[session(rename_all = "camelcase")]
struct Values {
    user_id: u64,
}

fn main() {}
