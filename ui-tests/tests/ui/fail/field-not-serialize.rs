use serde::Deserialize;
use typed_sessions::SessionSchema;

#[derive(Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
    cart: Cart,
}

fn main() {}
