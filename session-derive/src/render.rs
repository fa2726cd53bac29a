//! A type or generics rendered as the user would write them, for the docs and error messages
//! the derive writes.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};

/// A type or generics as the user would write it (`Vec<String>`, not `Vec < String >`), for
/// docs and messages.
pub(crate) fn render(tokens: TokenStream) -> String {
    let mut out = String::new();
    render_into(&mut out, tokens);
    out
}

fn render_into(out: &mut String, tokens: TokenStream) {
    // What was just written, to decide whether a space goes before the next token.
    #[derive(Clone, Copy, PartialEq)]
    enum Prev {
        Start,
        Ident,
        Other,
        /// A punctuation char joined to the next one (`-` of `->`, `'` of `'a`, first `:`).
        Joint,
        /// A punctuation char after which nothing is spaced (`<`, `&`, `*`, the end of `::`).
        Tight,
        Group,
    }
    let mut prev = Prev::Start;
    for tree in tokens {
        let tight_before = match &tree {
            TokenTree::Punct(punct) => {
                matches!(punct.as_char(), '>' | ',' | ';' | ':' | '.')
                    || (punct.as_char() == '<' && prev == Prev::Ident)
            }
            TokenTree::Group(group) => group.delimiter() == Delimiter::Parenthesis && prev == Prev::Ident,
            TokenTree::Ident(_) | TokenTree::Literal(_) => false,
        };
        if !matches!(prev, Prev::Start | Prev::Joint | Prev::Tight) && !tight_before {
            out.push(' ');
        }
        prev = match tree {
            TokenTree::Ident(ident) => {
                out.push_str(&ident.to_string());
                Prev::Ident
            }
            TokenTree::Literal(lit) => {
                out.push_str(&lit.to_string());
                Prev::Other
            }
            TokenTree::Punct(punct) => {
                let ch = punct.as_char();
                out.push(ch);
                if punct.spacing() == Spacing::Joint {
                    Prev::Joint
                } else if matches!(ch, '<' | '&' | '*' | '#' | '!') || (ch == ':' && prev == Prev::Joint) {
                    Prev::Tight
                } else {
                    Prev::Other
                }
            }
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::Brace => ("{ ", " }"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                render_into(out, group.stream());
                out.push_str(close);
                Prev::Group
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use quote::ToTokens;

    fn render(ty: &str) -> String {
        super::render(syn::parse_str::<syn::Type>(ty).unwrap().to_token_stream())
    }

    #[test]
    fn generics_render_as_written() {
        for generics in ["<T>", "<'a, T: Clone + Send, const N: usize>", "<T: Into<String>>"] {
            let parsed: syn::Generics = syn::parse_str(generics).unwrap();
            assert_eq!(super::render(parsed.to_token_stream()), generics);
        }
    }

    #[test]
    fn types_render_as_written() {
        for ty in [
            "u64",
            "Vec<String>",
            "Option<Vec<(u8, String)>>",
            "std::collections::HashMap<String, u32>",
            "::std::string::String",
            "[u8; 16]",
            "&'static str",
            "Box<dyn Fn() -> u8 + Send>",
            "<Foo as Trait>::Assoc",
            "&mut [u8]",
            "*const u8",
            "fn(u8) -> Option<u8>",
            "Vec<Option<Box<dyn std::error::Error + Send + Sync>>>",
        ] {
            assert_eq!(render(ty), ty);
        }
    }
}
