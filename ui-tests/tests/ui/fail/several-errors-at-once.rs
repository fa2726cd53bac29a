// Every mistake is reported in one build, each on its own token.
use typed_sessions::SessionSchema;

#[derive(SessionSchema)]
#[session(rename_all = "camel", tag = "kind")]
struct Values {
    #[session(renam = "uid")]
    user_id: u64,
    #[session(rename = "")]
    cart: Vec<String>,
    #[session(rename = 7)]
    visits: u32,
    #[session(rename = "theme", rename_all = "UPPERCASE")]
    color_theme: String,
    theme: String,
}

fn main() {}
