//! `#[session(rename_all = "..")]`: the case conventions, with exactly serde's names and rules.

use std::fmt;

/// A case convention that `rename_all` applies to every field name of a schema.
// The variant names are serde's spellings; the shared `Case` is part of them.
#[allow(clippy::enum_variant_names)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum RenameRule {
    /// `user_id` stays `user_id` (serde: field names are already lowercase).
    LowerCase,
    /// `user_id` → `USER_ID`.
    UpperCase,
    /// `user_id` → `UserId`.
    PascalCase,
    /// `user_id` → `userId`.
    CamelCase,
    /// `user_id` stays `user_id`.
    SnakeCase,
    /// `user_id` → `USER_ID`.
    ScreamingSnakeCase,
    /// `user_id` → `user-id`.
    KebabCase,
    /// `user_id` → `USER-ID`.
    ScreamingKebabCase,
}

/// Every rule, with the spelling `rename_all` accepts (serde's spelling).
pub(crate) const RULES: &[(&str, RenameRule)] = &[
    ("lowercase", RenameRule::LowerCase),
    ("UPPERCASE", RenameRule::UpperCase),
    ("PascalCase", RenameRule::PascalCase),
    ("camelCase", RenameRule::CamelCase),
    ("snake_case", RenameRule::SnakeCase),
    ("SCREAMING_SNAKE_CASE", RenameRule::ScreamingSnakeCase),
    ("kebab-case", RenameRule::KebabCase),
    ("SCREAMING-KEBAB-CASE", RenameRule::ScreamingKebabCase),
];

impl RenameRule {
    /// The rule spelled `name`, exactly as serde spells it.
    pub(crate) fn from_str(name: &str) -> Result<Self, ParseError<'_>> {
        RULES
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|(_, rule)| *rule)
            .ok_or(ParseError { unknown: name })
    }

    /// Applies the rule to a field name written in `snake_case` (the Rust convention), as serde
    /// does: the rules split words on `_` only.
    pub(crate) fn apply_to_field(self, field: &str) -> String {
        match self {
            RenameRule::LowerCase | RenameRule::SnakeCase => field.to_owned(),
            RenameRule::UpperCase | RenameRule::ScreamingSnakeCase => field.to_ascii_uppercase(),
            RenameRule::PascalCase => {
                let mut pascal = String::with_capacity(field.len());
                let mut capitalize = true;
                for ch in field.chars() {
                    if ch == '_' {
                        capitalize = true;
                    } else if capitalize {
                        pascal.push(ch.to_ascii_uppercase());
                        capitalize = false;
                    } else {
                        pascal.push(ch);
                    }
                }
                pascal
            }
            RenameRule::CamelCase => {
                let pascal = RenameRule::PascalCase.apply_to_field(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
            RenameRule::KebabCase => field.replace('_', "-"),
            RenameRule::ScreamingKebabCase => field.to_ascii_uppercase().replace('_', "-"),
        }
    }
}

/// `rename_all` named a rule that does not exist.
pub(crate) struct ParseError<'a> {
    unknown: &'a str,
}

impl fmt::Display for ParseError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`rename_all = {:?}` is not a rename rule; ", self.unknown)?;
        if let Some(meant) = self.near_miss() {
            write!(f, "did you mean {meant:?}? The rules are ")?;
        } else {
            f.write_str("use one of ")?;
        }
        for (i, (spelling, _)) in RULES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{spelling:?}")?;
        }
        f.write_str(" (serde's names)")
    }
}

impl ParseError<'_> {
    /// The rule the user probably meant: same letters in another case or with other separators
    /// (`"camelcase"`, `"kebab_case"`), or the unique rule that starts like it (`"camel"`).
    fn near_miss(&self) -> Option<&'static str> {
        fn squash(s: &str) -> String {
            s.chars()
                .filter(|c| *c != '_' && *c != '-' && *c != ' ')
                .map(|c| c.to_ascii_lowercase())
                .collect()
        }
        let wanted = squash(self.unknown);
        if let Some((spelling, _)) = RULES.iter().find(|(s, _)| squash(s) == wanted) {
            return Some(spelling);
        }
        if wanted.len() < 3 {
            return None;
        }
        let mut starting = RULES.iter().filter(|(s, _)| squash(s).starts_with(&wanted));
        match (starting.next(), starting.next()) {
            (Some((spelling, _)), None) => Some(spelling),
            _ => None,
        }
    }
}

/// The name of the associated const generated for a field: `SCREAMING_SNAKE_CASE` of the field
/// name (`user_id` → `USER_ID`; a camelCase field `userId` also gives `USER_ID`).
pub(crate) fn const_name(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    let mut prev_lower_or_digit = false;
    for ch in field.chars() {
        if ch.is_uppercase() && prev_lower_or_digit {
            out.push('_');
        }
        prev_lower_or_digit = ch.is_lowercase() || ch.is_ascii_digit();
        out.extend(ch.to_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{const_name, RenameRule, RULES};

    #[test]
    fn rename_rules_match_serde() {
        // (field, lowercase, UPPERCASE, PascalCase, camelCase, snake_case,
        //  SCREAMING_SNAKE_CASE, kebab-case, SCREAMING-KEBAB-CASE), from serde's own test table.
        let table: &[[&str; 9]] = &[
            [
                "outcome", "outcome", "OUTCOME", "Outcome", "outcome", "outcome", "OUTCOME", "outcome", "OUTCOME",
            ],
            [
                "very_tasty",
                "very_tasty",
                "VERY_TASTY",
                "VeryTasty",
                "veryTasty",
                "very_tasty",
                "VERY_TASTY",
                "very-tasty",
                "VERY-TASTY",
            ],
            ["a", "a", "A", "A", "a", "a", "A", "a", "A"],
            ["z42", "z42", "Z42", "Z42", "z42", "z42", "Z42", "z42", "Z42"],
        ];
        for row in table {
            let field = row[0];
            for (i, (spelling, rule)) in RULES.iter().enumerate() {
                assert_eq!(rule.apply_to_field(field), row[i + 1], "{spelling} applied to {field}");
            }
        }
    }

    #[test]
    fn camel_case_does_not_panic_on_non_ascii_or_leading_underscore() {
        assert_eq!(RenameRule::CamelCase.apply_to_field("édition_date"), "éditionDate");
        assert_eq!(RenameRule::CamelCase.apply_to_field("_private_key"), "privateKey");
        assert_eq!(RenameRule::PascalCase.apply_to_field("user__id"), "UserId");
    }

    #[test]
    fn parses_exactly_serde_spellings() {
        for (spelling, rule) in RULES {
            assert_eq!(RenameRule::from_str(spelling).ok(), Some(*rule));
        }
        for wrong in ["camelcase", "Camel", "kebab_case", "", "SCREAMING_KEBAB_CASE"] {
            assert!(RenameRule::from_str(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn parse_error_suggests_near_miss_and_lists_all() {
        let message = |wrong: &str| RenameRule::from_str(wrong).err().unwrap().to_string();
        for (wrong, meant) in [
            ("camelcase", "camelCase"),
            ("camel", "camelCase"),
            ("Camel Case", "camelCase"),
            ("kebab_case", "kebab-case"),
            ("SCREAMING_KEBAB_CASE", "SCREAMING-KEBAB-CASE"),
            ("pascal", "PascalCase"),
            ("upper", "UPPERCASE"),
        ] {
            let msg = message(wrong);
            assert!(msg.contains(&format!("did you mean {meant:?}?")), "{msg}");
            assert!(msg.contains("\"lowercase\", \"UPPERCASE\""), "{msg}");
        }
        // Ambiguous or unrelated: no guess, just the list.
        for wrong in ["screaming", "shouting", "ca", ""] {
            let msg = message(wrong);
            assert!(!msg.contains("did you mean"), "{msg}");
            assert!(msg.contains("use one of \"lowercase\", \"UPPERCASE\""), "{msg}");
            assert!(msg.contains("\"SCREAMING-KEBAB-CASE\" (serde's names)"), "{msg}");
        }
    }

    #[test]
    fn const_names() {
        assert_eq!(const_name("user_id"), "USER_ID");
        assert_eq!(const_name("type"), "TYPE");
        assert_eq!(const_name("userId"), "USER_ID");
        assert_eq!(const_name("x"), "X");
        assert_eq!(const_name("v2_token"), "V2_TOKEN");
        assert_eq!(const_name("_hidden"), "_HIDDEN");
        assert_eq!(const_name("straße"), "STRASSE");
    }
}
