use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
enum Values {
    LoggedIn { user_id: u64 },
    Anonymous,
}

fn main() {}
