use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    #[session(owner)]
    user_id: u64,
    #[session(owner)]
    account_id: u64,
}

fn main() {}
