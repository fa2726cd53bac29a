use typed_sessions::{Session, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
}

// Another module's schema: its keys do not open `Session<Values>`.
#[derive(SessionSchema)]
struct Cart {
    items: Vec<String>,
}

fn handler(session: Session<Values>) {
    let _ = session.get(Cart::ITEMS);
}

fn main() {}
