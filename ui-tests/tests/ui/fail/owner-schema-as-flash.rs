use typed_sessions::{Session, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    visits: u32,
}

#[derive(SessionSchema)]
struct Flash {
    #[session(owner)]
    user_id: u64,
}

async fn handler(session: Session<Values, Flash>) {
    let _ = session;
}

fn main() {
    let _ = handler;
}
