use typed_sessions::SessionSchema;

// A value read back from the store cannot borrow from it: use `String`.
#[derive(SessionSchema)]
struct Values {
    user_name: &'static str,
}

fn main() {}
