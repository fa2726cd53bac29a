use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values<T> {
    user_id: T,
}

fn main() {}
