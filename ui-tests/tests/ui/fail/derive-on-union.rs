use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
union Values {
    user_id: u64,
    visits: u32,
}

fn main() {}
