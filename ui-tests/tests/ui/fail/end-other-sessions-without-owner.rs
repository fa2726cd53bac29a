use typed_sessions::{Session, SessionRejection, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
}

async fn log_out_elsewhere(session: Session<Values>) -> Result<u64, SessionRejection> {
    session.end_other_sessions().await
}

fn main() {
    let _ = log_out_elsewhere;
}
