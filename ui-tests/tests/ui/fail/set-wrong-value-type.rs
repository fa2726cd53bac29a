use typed_sessions::{Session, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
}

#[derive(SessionSchema)]
struct Flash {
    notice: String,
}

fn handler(mut session: Session<Values, Flash>) {
    session.set(Values::USER_ID, "x");
}

fn main() {}
