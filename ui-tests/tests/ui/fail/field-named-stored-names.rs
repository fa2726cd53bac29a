use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
struct Values {
    stored_names: Vec<String>,
}

fn main() {}
