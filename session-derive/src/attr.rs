//! `#[session(..)]` attributes: `rename_all` on the struct, `rename` and `owner` on a field.
//!
//! Parsing never stops at the first mistake: a bad key or value is recorded in the [`Ctxt`] and
//! the rest of the attribute is still read, so the user sees every problem in one build.

use crate::case::RenameRule;
use crate::ctxt::Ctxt;
use proc_macro2::TokenTree;
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::{Attribute, Expr, ExprGroup, ExprLit, Lit, LitStr, Token};

/// The helper attribute's name: `#[session(..)]`.
const SESSION: &str = "session";

/// What `#[session(..)]` on the struct said.
#[derive(Default)]
pub(crate) struct Container {
    /// `rename_all = ".."`, if given and valid.
    pub(crate) rename_all: Option<RenameRule>,
}

/// What `#[session(..)]` on one field said.
#[derive(Default)]
pub(crate) struct Field {
    /// `rename = ".."`, if given and valid: the literal, so that errors can point at it.
    pub(crate) rename: Option<LitStr>,
    /// `owner`, if given (and written without a value): the path, so that errors can point at
    /// it.
    pub(crate) owner: Option<syn::Path>,
}

/// Where an attribute was written; decides which keys are allowed.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Target {
    Container,
    Field,
}

impl Container {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = Container::default();
        // The literal of the first `rename_all`, valid or not, for duplicate detection.
        let mut seen: Option<LitStr> = None;
        parse_session_attrs(cx, attrs, Target::Container, |meta, key| {
            if key != "rename_all" {
                return Ok(false);
            }
            let Some(lit) = string_value(cx, meta, "rename_all", "camelCase")? else {
                return Ok(true);
            };
            if let Some(first) = &seen {
                cx.error_spanned_by(
                    &meta.path,
                    format_args!(
                        "duplicate session attribute `rename_all`: it is already set to {:?}; \
                         keep only one",
                        first.value()
                    ),
                );
                return Ok(true);
            }
            match RenameRule::from_str(&lit.value()) {
                Ok(rule) => out.rename_all = Some(rule),
                Err(err) => cx.error_spanned_by(&lit, err),
            }
            seen = Some(lit);
            Ok(true)
        });
        out
    }
}

impl Field {
    pub(crate) fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut out = Field::default();
        let mut seen: Option<LitStr> = None;
        parse_session_attrs(cx, attrs, Target::Field, |meta, key| {
            if key == "owner" {
                owner_flag(cx, meta, &mut out.owner)?;
                return Ok(true);
            }
            if key != "rename" {
                return Ok(false);
            }
            let Some(lit) = string_value(cx, meta, "rename", "new_name")? else {
                return Ok(true);
            };
            if let Some(first) = &seen {
                cx.error_spanned_by(
                    &meta.path,
                    format_args!(
                        "duplicate session attribute `rename`: this field is already renamed \
                         to {:?}; keep only one",
                        first.value()
                    ),
                );
                return Ok(true);
            }
            if lit.value().is_empty() {
                cx.error_spanned_by(
                    &lit,
                    "a stored name cannot be empty: write `rename = \"new_name\"`, or remove \
                     the attribute to store the field under its own name",
                );
            } else {
                out.rename = Some(lit.clone());
            }
            seen = Some(lit);
            Ok(true)
        });
        out
    }
}

/// Reads `owner`, which takes no value: `#[session(owner)]`.
fn owner_flag(cx: &Ctxt, meta: &ParseNestedMeta<'_>, owner: &mut Option<syn::Path>) -> syn::Result<()> {
    if !meta.input.is_empty() && !meta.input.peek(Token![,]) {
        cx.error_spanned_by(
            &meta.path,
            "`owner` takes no value: write `#[session(owner)]` on the field that says whose \
             session it is (the owner is that field's value)",
        );
        return skip_value(meta.input);
    }
    if owner.is_some() {
        cx.error_spanned_by(
            &meta.path,
            "duplicate session attribute `owner`: this field is already the owner; keep only one",
        );
    } else {
        *owner = Some(meta.path.clone());
    }
    Ok(())
}

/// Runs `known` on every key of every `#[session(..)]` in `attrs`. `known` returns `Ok(true)`
/// when it handled the key (and consumed its value); anything it does not handle is reported
/// here as misplaced or unknown, and its value is skipped so parsing can go on.
fn parse_session_attrs(
    cx: &Ctxt,
    attrs: &[Attribute],
    target: Target,
    mut known: impl FnMut(&ParseNestedMeta<'_>, &str) -> syn::Result<bool>,
) {
    for attr in attrs {
        if !attr.path().is_ident(SESSION) {
            continue;
        }
        if let syn::Meta::Path(_) | syn::Meta::NameValue(_) = attr.meta {
            let example = match target {
                Target::Container => "#[session(rename_all = \"camelCase\")]",
                Target::Field => "#[session(rename = \"new_name\")]",
            };
            cx.error_spanned_by(
                attr,
                format_args!("expected a list of session attributes, like `{example}`"),
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map_or_else(|| path_to_string(&meta.path), ToString::to_string);
            if known(&meta, &key)? {
                return Ok(());
            }
            cx.error_spanned_by(&meta.path, misplaced_or_unknown(&key, target));
            skip_value(meta.input)
        });
        if let Err(err) = result {
            cx.syn_error(err);
        }
    }
}

/// The message for a key that is not accepted where it was written.
fn misplaced_or_unknown(key: &str, target: Target) -> String {
    match (key, target) {
        ("rename", Target::Container) => "`rename` renames one field, so it goes on that field: \
             `#[session(rename = \"new_name\")]`; to rename every field of the struct, use \
             `#[session(rename_all = \"camelCase\")]` here"
            .to_owned(),
        ("owner", Target::Container) => "`owner` marks the field whose value says whose session \
             it is, so it goes on that field: `#[session(owner)] user_id: u64`"
            .to_owned(),
        ("rename_all", Target::Field) => "`rename_all` goes on the struct, not on a field; to \
             rename this field, use `#[session(rename = \"new_name\")]`"
            .to_owned(),
        (_, Target::Container) => format!(
            "unknown session attribute `{key}`; on the struct the only one is \
             `rename_all = \"..\"` (fields take `rename = \"..\"` and `owner`)"
        ),
        (_, Target::Field) => format!(
            "unknown session attribute `{key}`; on a field they are `rename = \"..\"` and \
             `owner` (the struct takes `rename_all = \"..\"`)"
        ),
    }
}

/// Reads `= "string"` after `key`. A missing `=` or a value that is not a string literal is
/// recorded in `cx` (and skipped), giving `Ok(None)`; `Err` only for input `syn` cannot read
/// at all.
fn string_value(cx: &Ctxt, meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<Option<LitStr>> {
    if !meta.input.peek(Token![=]) {
        cx.error_spanned_by(
            &meta.path,
            format_args!("`{key}` needs a value: write `{key} = \"{example}\"`"),
        );
        skip_value(meta.input)?;
        return Ok(None);
    }
    let expr: Expr = meta.value()?.parse()?;
    let mut value = &expr;
    // A literal passed through a `macro_rules!` fragment arrives wrapped in an invisible group.
    while let Expr::Group(ExprGroup { expr, .. }) = value {
        value = expr;
    }
    if let Expr::Lit(ExprLit { lit: Lit::Str(lit), .. }) = value {
        return Ok(Some(lit.clone()));
    }
    cx.error_spanned_by(
        &expr,
        format_args!("`{key}` takes a string literal: write `{key} = \"{example}\"`"),
    );
    Ok(None)
}

/// Skips whatever follows a key (`= value`, `(..)`), up to the next top-level comma.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn path_to_string(path: &syn::Path) -> String {
    let mut out = String::new();
    if path.leading_colon.is_some() {
        out.push_str("::");
    }
    for (i, segment) in path.segments.iter().enumerate() {
        if i > 0 {
            out.push_str("::");
        }
        out.push_str(&segment.ident.to_string());
    }
    out
}
