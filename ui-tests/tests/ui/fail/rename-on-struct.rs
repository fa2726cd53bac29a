use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
#[session(rename = "values")]
struct Values {
    user_id: u64,
}

fn main() {}
