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
    let _ = session.get_flash(Values::USER_ID);
}

fn main() {}
