// Stored names: the field name, `rename`, and every `rename_all` rule (serde's names and rules).
use typed_sessions::{Key, SessionSchema};

macro_rules! schema_with_rule {
    ($name:ident, $rule:literal) => {
        #[derive(SessionSchema)]
        #[session(rename_all = $rule)]
        struct $name {
            user_id: u64,
            r#type: String,
            #[session(rename = "CART")]
            cart_items: Vec<String>,
        }
    };
}

schema_with_rule!(Lower, "lowercase");
schema_with_rule!(Upper, "UPPERCASE");
schema_with_rule!(Pascal, "PascalCase");
schema_with_rule!(Camel, "camelCase");
schema_with_rule!(Snake, "snake_case");
schema_with_rule!(ScreamingSnake, "SCREAMING_SNAKE_CASE");
schema_with_rule!(Kebab, "kebab-case");
schema_with_rule!(ScreamingKebab, "SCREAMING-KEBAB-CASE");

#[derive(SessionSchema)]
struct Plain {
    user_id: u64,
    #[session(rename = "cartItems")]
    cart: Vec<String>,
    // A raw identifier is stored, and named as a const, without its `r#`.
    r#type: String,
    // Any non-empty string is a valid stored name.
    #[session(rename = "flash.notice")]
    notice: String,
}

// No keys at all: a valid (if useless) schema.
#[derive(SessionSchema)]
struct Empty {}

fn names<S: SessionSchema>() -> &'static [&'static str] {
    S::STORED_NAMES
}

fn main() {
    assert_eq!(Plain::USER_ID.name(), "user_id");
    assert_eq!(Plain::CART.name(), "cartItems");
    assert_eq!(Plain::TYPE.name(), "type");
    assert_eq!(Plain::NOTICE.name(), "flash.notice");
    assert_eq!(
        names::<Plain>(),
        ["user_id", "cartItems", "type", "flash.notice"]
    );

    // `rename` wins over `rename_all`.
    assert_eq!(names::<Lower>(), ["user_id", "type", "CART"]);
    assert_eq!(names::<Upper>(), ["USER_ID", "TYPE", "CART"]);
    assert_eq!(names::<Pascal>(), ["UserId", "Type", "CART"]);
    assert_eq!(names::<Camel>(), ["userId", "type", "CART"]);
    assert_eq!(names::<Snake>(), ["user_id", "type", "CART"]);
    assert_eq!(names::<ScreamingSnake>(), ["USER_ID", "TYPE", "CART"]);
    assert_eq!(names::<Kebab>(), ["user-id", "type", "CART"]);
    assert_eq!(names::<ScreamingKebab>(), ["USER-ID", "TYPE", "CART"]);

    // Keys are typed consts, named in SCREAMING_SNAKE_CASE whatever the stored name.
    let key: Key<Camel, u64> = Camel::USER_ID;
    assert_eq!(key.name(), "userId");
    let key: Key<Kebab, Vec<String>> = Kebab::CART_ITEMS;
    assert_eq!(key.name(), "CART");
    assert_eq!(ScreamingKebab::TYPE.name(), "TYPE");
    assert_eq!(Pascal::TYPE.name(), "Type");
    assert_eq!(Lower::USER_ID.name(), "user_id");
    assert_eq!(Upper::USER_ID.name(), "USER_ID");
    assert_eq!(Snake::USER_ID.name(), "user_id");
    assert_eq!(ScreamingSnake::USER_ID.name(), "USER_ID");

    assert!(names::<Empty>().is_empty());
}
