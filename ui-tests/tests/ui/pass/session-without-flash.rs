// `Session<Values>` has no flash: its flash schema is `()`.
use typed_sessions::{Session, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
    visits: u32,
}

fn handler(mut session: Session<Values>) -> Option<u64> {
    session.update(Values::VISITS, |visits| *visits += 1);
    session.set(Values::USER_ID, 7);
    let _: Session<Values, ()> = session.clone();
    session.get(Values::USER_ID)
}

fn main() {
    let _ = handler as fn(Session<Values>) -> Option<u64>;
    assert_eq!(<() as SessionSchema>::STORED_NAMES.len(), 0);
}
