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
    session.flash(Values::USER_ID, 42);
}

fn main() {}
