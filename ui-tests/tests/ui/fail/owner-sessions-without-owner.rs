use typed_sessions::{Session, SessionRejection, SessionSchema};

#[derive(SessionSchema)]
struct Values {
    user_id: u64,
}

async fn devices(session: Session<Values>) -> Result<usize, SessionRejection> {
    Ok(session.owner_sessions().await?.len())
}

fn main() {
    let _ = devices;
}
